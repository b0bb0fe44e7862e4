// Encodes a UTF-8 file with npm's llama3-tokenizer-js (no <|begin_of_text|> or <|end_of_text|>
// added), in one encode call: the ids on stdout, one a line; the encode call's time on stderr.
// Used by launch/check_llama3_tokenizer.sh, and to compare speeds (docs/models.md).
// usage: node launch/llama3_js_encode.mjs PACKAGE_DIR TEXT_FILE > ids
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const [pkg, file] = process.argv.slice(2);
if (!pkg || !file) {
  console.error('usage: node launch/llama3_js_encode.mjs PACKAGE_DIR TEXT_FILE');
  process.exit(2);
}
const mod = await import(pathToFileURL(path.resolve(pkg, 'bundle/llama3-tokenizer-with-baked-data.js')).href);
const tokenizer = mod.default;
const text = fs.readFileSync(file, 'utf8');
const t0 = performance.now();
const ids = tokenizer.encode(text, { bos: false, eos: false });
const seconds = (performance.now() - t0) / 1000;
fs.writeSync(1, ids.join('\n') + '\n');
console.error(`llama3-tokenizer-js: ${ids.length} tokens from ${Buffer.byteLength(text)} bytes in ${seconds.toFixed(3)} s of encode: ` +
              `${Math.round(ids.length / seconds)} tokens/s`);
