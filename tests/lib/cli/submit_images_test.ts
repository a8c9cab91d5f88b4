/** `deno task submit --n N --image FILE|URL|job:ID` against the real service and a fake xAI. */
import assert from "node:assert/strict";
import { sniffImage } from "../../../lib/provider/images.ts";
import { runCli } from "./cli_helpers.ts";
import { jobIdOf, startFixture } from "./fixture.ts";

Deno.test("deno task submit asks for several images and edits files, URLs and jobs", async (t) => {
  const f = await startFixture({ DEV_MODE: "1" });
  const { service, xai, cwd, fakeImage } = f;
  const run = (args: string[]) => runCli([...args, "--url", service.url], { cwd });
  try {
    let many = "";
    await t.step("--n 3 makes one request and writes <id>-<k>.<ext> for each image", async () => {
      const before = xai.calls;
      const { code, stdout, stderr } = await run(["three foxes", "--n", "3"]);
      assert.equal(code, 0, stderr);
      assert.equal(xai.calls - before, 1);
      assert.equal((xai.requests.at(-1)!.body as { n: number }).n, 3);
      many = jobIdOf(stdout);
      const files = [`${many}-0.png`, `${many}-1.jpg`, `${many}-2.webp`];
      for (const [k, file] of files.entries()) {
        assert.match(stdout, new RegExp(`Saved ${file.replace(".", "\\.")}`));
        const bytes = await Deno.readFile(`${cwd}/${file}`);
        assert.equal(sniffImage(bytes), ["image/png", "image/jpeg", "image/webp"][k]);
      }
      assert.deepEqual(await Deno.readFile(`${cwd}/${many}-0.png`), fakeImage);
    });
    await t.step("--image FILE goes as a data URL, a URL as it is, to /images/edits", async () => {
      await Deno.writeFile(`${cwd}/in.png`, fakeImage);
      const url = "https://images.example.invalid/in.jpg";
      const { code, stderr } = await run(["edit", "--image", "in.png", "--image", url]);
      assert.equal(code, 0, stderr);
      const { path, body } = xai.requests.at(-1)! as { path: string; body: { images: unknown } };
      assert.equal(path, "/v1/images/edits");
      assert.deepEqual(body.images, [
        { url: `data:image/png;base64,${fakeImage.toBase64()}`, type: "image_url" },
        { url, type: "image_url" },
      ]);
    });
    await t.step("--image job:ID#K edits an image of an earlier job", async () => {
      const { code, stderr } = await run(["edit it", "--image", `job:${many}#1`, "-o", "e.jpg"]);
      assert.equal(code, 0, stderr);
      const { body } = xai.requests.at(-1)! as { body: { image: { url: string } } };
      const second = await Deno.readFile(`${cwd}/${many}-1.jpg`);
      assert.equal(body.image.url, `data:image/jpeg;base64,${second.toBase64()}`);
    });
    await t.step(
      "bad values are usage errors; a refused reference is the service's 422",
      async () => {
        await Deno.writeTextFile(`${cwd}/notes.txt`, "not an image");
        for (
          const args of [["--n", "11"], ["--n", "two"], ["--image", "missing.png"], [
            "--image",
            "notes.txt",
          ]]
        ) {
          const { code, stderr } = await run(["p", ...args]);
          assert.equal(code, 2, `${args.join(" ")}: ${stderr}`);
        }
        const { code, stderr } = await run(["p", "--image", "job:nobody-has-this"]);
        assert.equal(code, 4, stderr);
      },
    );
  } finally {
    await f.close();
  }
});
