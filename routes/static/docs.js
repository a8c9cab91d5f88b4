// Starts the API reference from the Scalar bundle this service serves, with nothing fetched from
// anywhere else (no web fonts, no telemetry, no AI agent, no hosted tools).

// The bundle's zod probes for `new Function` support unless told not to; the page's policy forbids eval.
globalThis.__zod_globalConfig = { ...globalThis.__zod_globalConfig, jitless: true };

const bundle = document.createElement("script");
bundle.src = document.querySelector("script[data-bundle]").dataset.bundle;
bundle.addEventListener("load", () => {
  globalThis.Scalar.createApiReference("#app", {
    url: "/openapi.json",
    withDefaultFonts: false,
    telemetry: false,
    hideClientButton: true,
    showDeveloperTools: "never",
    agent: { disabled: true },
  });
});
document.head.append(bundle);
