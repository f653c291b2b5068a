// Copy the three.js files the viewer uses from node_modules/three into service/static/vendor/three/.
// Usage (in web/):  npm install && npm run vendor     — see web/README.md.
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const src = join(here, "node_modules", "three");
const dst = join(here, "..", "service", "static", "vendor", "three");
const files = [
  "LICENSE",
  "build/three.module.js",
  "build/three.core.js",
  "examples/jsm/controls/OrbitControls.js",
  "examples/jsm/loaders/OBJLoader.js",
  "examples/jsm/loaders/PLYLoader.js",
  "examples/jsm/loaders/STLLoader.js",
];
const version = JSON.parse(readFileSync(join(src, "package.json"), "utf8")).version;
rmSync(dst, { recursive: true, force: true });
for (const file of files) {
  const out = join(dst, file.replace("examples/jsm/", "addons/").replace("build/", ""));
  mkdirSync(dirname(out), { recursive: true });
  copyFileSync(join(src, file), out);
}
writeFileSync(join(dst, "VERSION"), `three@${version} (npm), copied unmodified by web/vendor.mjs\n`);
console.log(`vendored three@${version} into ${dst}`);
