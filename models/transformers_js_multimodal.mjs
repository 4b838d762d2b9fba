// Greedy generation with transformers.js' Gemma4ForConditionalGeneration on a local model, from tensors on disk.
// node models/transformers_js_multimodal.mjs MODEL_DIR VARIANT INPUTS_DIR NEW_TOKENS
// INPUTS_DIR holds inputs.json ({"input_ids": [...], "tensors": {name: {"dtype", "dims", "file"}}}) and one raw
// little-endian file per tensor. Prints one JSON line: {"ids": [...]}.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const require = createRequire(path.join(path.dirname(new URL(import.meta.url).pathname), ".node", "package.json"));
const { env, Gemma4ForConditionalGeneration, Tensor } = await import(require.resolve("@huggingface/transformers"));

const [modelDir, variant, inputsDir, newTokensText] = process.argv.slice(2);
env.allowRemoteModels = false;
env.localModelPath = path.dirname(path.resolve(modelDir));
const model = await Gemma4ForConditionalGeneration.from_pretrained(path.basename(modelDir), {
  dtype: variant,
  device: "cpu",
});
const spec = JSON.parse(fs.readFileSync(path.join(inputsDir, "inputs.json"), "utf8"));
const ids = spec.input_ids;
const arrays = {
  float32: (b) => new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4),
  int64: (b) => new BigInt64Array(b.buffer, b.byteOffset, b.byteLength / 8),
  bool: (b) => new Uint8Array(b.buffer, b.byteOffset, b.byteLength),
};
const tensors = {};
for (const [name, t] of Object.entries(spec.tensors)) {
  const bytes = fs.readFileSync(path.join(inputsDir, t.file));
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  tensors[name] = new Tensor(t.dtype, arrays[t.dtype](copy), t.dims);
}
const out = await model.generate({
  input_ids: new Tensor("int64", BigInt64Array.from(ids.map(BigInt)), [1, ids.length]),
  attention_mask: new Tensor("int64", BigInt64Array.from(ids.map(() => 1n)), [1, ids.length]),
  ...tensors,
  do_sample: false,
  max_new_tokens: Number(newTokensText),
  eos_token_id: null,
});
console.log(JSON.stringify({ ids: Array.from(out.data.slice(ids.length), Number) }));
