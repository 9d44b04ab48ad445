// Copies every lexicon document from the pinned @atproto/api package into lexicons/,
// one pretty-printed JSON file per NSID under its NSID path, and records the source.
// Idempotent: the same package version always yields byte-identical files.
// Usage: npm run sync-lexicons   (after bumping "@atproto/api" in package.json and npm install)
import { createRequire } from 'node:module';
import { mkdirSync, readdirSync, rmSync, writeFileSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'lexicons');
const require = createRequire(join(root, 'package.json'));
const pkgName = '@atproto/api';
const pkgVersion = JSON.parse(readFileSync(join(root, 'node_modules', ...pkgName.split('/'), 'package.json'), 'utf8')).version;
const { schemas } = require(pkgName);

// Object keys keep the package's order; only the file layout is ours.
const written = new Set();
for (const doc of [...schemas].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))) {
  if (doc.lexicon !== 1 || typeof doc.id !== 'string') throw new Error(`not a lexicon document: ${JSON.stringify(doc).slice(0, 80)}`);
  const file = join(out, ...doc.id.split('.')) + '.json';
  if (written.has(file)) throw new Error(`duplicate lexicon id ${doc.id}`);
  written.add(file);
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, JSON.stringify(doc, null, 2) + '\n');
}

// This project's own methods (written by hand, never from the package) live here.
const own = join(out, 'dev', 'rustpds');

// Remove documents the pinned version no longer has, and folders left empty.
function prune(dir) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (path === own) continue;
    if (statSync(path).isDirectory()) {
      prune(path);
      if (readdirSync(path).length === 0) rmSync(path, { recursive: true });
    } else if (name.endsWith('.json') && !written.has(path)) {
      rmSync(path);
    }
  }
}
prune(out);

writeFileSync(
  join(out, 'SOURCE.md'),
  `# Source of these lexicons\n\nCopied by \`npm run sync-lexicons\` (codegen/sync-lexicons.mjs) from the npm package\n` +
    `\`${pkgName}\` version \`${pkgVersion}\`, export \`schemas\`: ${written.size} documents.\n\n` +
    `\`dev/rustpds/\` holds this project's own methods (namespace \`dev.rustpds\`), written by hand;\n` +
    `the sync leaves them alone.\n\n` +
    `To update: bump \`${pkgName}\` in package.json, \`npm install\`, \`npm run sync-lexicons\`,\n` +
    `\`cargo run -p pds-codegen\`, review the diff, commit lexicons/ and generated/ together.\n`,
);
console.log(`lexicons/: ${written.size} documents from ${pkgName}@${pkgVersion}`);
