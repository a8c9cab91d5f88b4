import assert from "node:assert/strict";
import { isPrivateAddress, parseIpv6 } from "../../../lib/webhooks/addresses.ts";
import {
  checkWebhookTarget,
  isListedHost,
  type ResolveDns,
  webhookUrlProblem,
} from "../../../lib/webhooks/egress.ts";

const LISTED = ["127.0.0.1:9000", "[::1]:9001", "hooks.internal", "localhost:9002"];

Deno.test("webhookUrlProblem accepts public http(s) URLs and listed internal hosts", async (t) => {
  for (
    const url of [
      "https://example.com/hooks?x=1",
      "http://example.com:8080/h",
      "https://8.8.8.8/h",
      "http://172.32.0.1/",
      "http://100.128.0.1/",
      "https://[2001:4860:4860::8888]/h",
      "http://127.0.0.1:9000/hook",
      "http://[::1]:9001/",
      "http://hooks.internal/",
      "https://hooks.internal/",
      "http://localhost:9002/h",
      "https://hooks.internal:8443/", // a name, not an address: resolved and checked at delivery
      `https://example.com/${"a".repeat(2048 - "https://example.com/".length)}`,
    ]
  ) {
    await t.step(url.slice(0, 60), () => assert.equal(webhookUrlProblem(url, LISTED), null));
  }
});

Deno.test("webhookUrlProblem refuses bad URLs and unlisted internal addresses", async (t) => {
  const table: [string, RegExp][] = [
    ["not a url", /not an absolute http or https URL/],
    ["/relative/path", /not an absolute http or https URL/],
    ["ftp://example.com/", /not an absolute http or https URL/],
    ["javascript:alert(1)", /not an absolute http or https URL/],
    ["https://user:pass@example.com/", /credentials/],
    ["https://user@example.com/", /credentials/],
    [`https://example.com/${"a".repeat(2048)}`, /longer than 2048/],
    ["http://127.0.0.1/", /loopback, private or link-local/],
    ["http://127.0.0.1:9999/", /loopback, private or link-local/], // listed with another port
    ["http://127.1.2.3:9000/", /loopback/],
    ["http://2130706433/", /loopback/], // 127.0.0.1 spelt as one number
    ["http://0x7f.0.0.1/", /loopback/],
    ["http://0.0.0.0/", /loopback/],
    ["http://0/", /loopback/],
    ["http://10.1.2.3/", /private/],
    ["http://172.16.0.1/", /private/],
    ["http://172.31.255.255/", /private/],
    ["http://192.168.1.1/", /private/],
    ["http://169.254.169.254/latest/meta-data", /link-local/],
    ["http://100.64.0.1/", /private/],
    ["http://100.127.255.255/", /private/],
    ["http://224.0.0.1/", /private/],
    ["http://255.255.255.255/", /private/],
    ["http://[::1]/", /loopback/],
    ["http://[::]/", /loopback/],
    ["http://[::ffff:127.0.0.1]/", /loopback/],
    ["http://[::ffff:10.0.0.1]/", /loopback/],
    ["http://[::ffff:169.254.169.254]/", /loopback/],
    ["http://[64:ff9b::a9fe:a9fe]/", /loopback/],
    ["http://[fc00::1]/", /private/],
    ["http://[fd12:3456::1]/", /private/],
    ["http://[fe80::1]/", /link-local/],
    ["http://[febf::1]/", /link-local/],
    ["http://[ff02::1]/", /private/],
    ["http://localhost/", /loopback/],
    ["http://LOCALHOST:9002.evil/", /not an absolute/],
    ["http://app.localhost/", /loopback/],
    ["http://localhost./", /loopback/],
  ];
  for (const [url, reason] of table) {
    await t.step(url.slice(0, 60), () => {
      const problem = webhookUrlProblem(url, LISTED);
      assert.match(problem ?? "accepted", reason);
      assert.doesNotMatch(problem!, /^[A-Z]|\.$/); // a reason to follow "Cannot accept …: "
    });
  }
});

Deno.test("isListedHost matches host:port entries exactly and bare hosts on the default port", () => {
  const check = (url: string) => isListedHost(new URL(url), LISTED);
  assert.equal(check("http://127.0.0.1:9000/"), true);
  assert.equal(check("https://127.0.0.1:9000/"), true);
  assert.equal(check("http://127.0.0.1/"), false);
  assert.equal(check("http://[0:0::1]:9001/"), true); // the URL's canonical spelling counts
  assert.equal(check("http://hooks.internal/"), true);
  assert.equal(check("https://HOOKS.internal:443/"), true);
  assert.equal(check("http://hooks.internal:8080/"), false);
  assert.equal(check("http://sub.hooks.internal/"), false);
});

Deno.test("isPrivateAddress classifies IPv4 and IPv6 literals", () => {
  for (
    const address of ["127.0.0.1", "10.0.0.1", "::1", "::", "fe80::1%eth0", "::ffff:192.168.0.1"]
  ) {
    assert.equal(isPrivateAddress(address), true, address);
  }
  for (const address of ["8.8.8.8", "1.1.1.1", "2001:4860:4860::8888", "::ffff:8.8.8.8"]) {
    assert.equal(isPrivateAddress(address), false, address);
  }
  for (const text of ["example.com", "1.2.3", "1.2.3.256", "1::2::3", "12345::1", ""]) {
    assert.equal(isPrivateAddress(text), null, text);
  }
  assert.deepEqual(parseIpv6("1:2:3:4:5:6:7:8"), [1, 2, 3, 4, 5, 6, 7, 8]);
  assert.deepEqual(parseIpv6("::ffff:1.2.3.4"), [0, 0, 0, 0, 0, 0xffff, 0x102, 0x304]);
  assert.deepEqual(parseIpv6("1::"), [1, 0, 0, 0, 0, 0, 0, 0]);
  assert.equal(parseIpv6("1:2:3:4:5:6:7:8:9"), null);
});

function dns(answers: Record<string, { A?: string[]; AAAA?: string[] }>): ResolveDns {
  return (name, type) => {
    const found = answers[name]?.[type];
    return found ? Promise.resolve(found) : Promise.reject(new Error(`no ${type} for ${name}`));
  };
}

Deno.test("checkWebhookTarget pins the resolved address of a public name", async () => {
  const resolveDns = dns({ "hooks.example": { A: ["93.184.216.34"], AAAA: ["2606:2800::1"] } });
  const check = await checkWebhookTarget("https://hooks.example/h", [], { resolveDns });
  assert.ok(check.ok);
  assert.equal(check.target.address, "93.184.216.34");
  assert.equal(check.target.port, 443);
  assert.equal(check.target.tls, true);
  assert.equal(check.target.url.host, "hooks.example");
});

Deno.test("checkWebhookTarget refuses a name when any address it resolves to is internal", async (t) => {
  for (
    const answer of [
      { A: ["127.0.0.1"] },
      { A: ["8.8.8.8"], AAAA: ["::1"] },
      { AAAA: ["fd00::5"] },
      {
        A: ["169.254.169.254"],
      },
    ]
  ) {
    await t.step(JSON.stringify(answer), async () => {
      const resolveDns = dns({ "rebind.example": answer });
      const check = await checkWebhookTarget("http://rebind.example/", [], { resolveDns });
      assert.ok(!check.ok && check.refused);
      assert.match(check.reason, /resolves to the non-public address/);
    });
  }
});

Deno.test("checkWebhookTarget retries a name that does not resolve, and connects listed names by name", async () => {
  const resolveDns = dns({});
  const missing = await checkWebhookTarget("http://nowhere.example/", [], { resolveDns });
  assert.ok(!missing.ok && !missing.refused);
  const listed = await checkWebhookTarget("http://hooks.internal/", LISTED, { resolveDns });
  assert.ok(listed.ok);
  assert.equal(listed.target.address, "hooks.internal");
  const local = await checkWebhookTarget("http://localhost:9002/", LISTED, { resolveDns });
  assert.ok(local.ok);
  assert.equal(local.target.address, "127.0.0.1");
  const literal = await checkWebhookTarget("http://[::1]:9001/", LISTED, { resolveDns });
  assert.ok(literal.ok);
  assert.equal(literal.target.address, "::1");
  const refused = await checkWebhookTarget("http://10.0.0.1/", LISTED, { resolveDns });
  assert.ok(!refused.ok && refused.refused);
});
