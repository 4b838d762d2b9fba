// Greedy generation with transformers.js (the public reference client of these exports) on a local model.
// node models/transformers_js_generate.mjs MODEL_DIR VARIANT '[prompt ids]' NEW_TOKENS
// Prints one JSON line: ids, prefill/decode tokens per second, ttft_ms, peak_rss_mb.
import path from "node:path";
import { createRequire } from "node:module";

const require = createRequire(path.join(path.dirname(new URL(import.meta.url).pathname), ".node", "package.json"));
const { env, AutoModelForCausalLM, Tensor } = await import(require.resolve("@huggingface/transformers"));

const [modelDir, variant, promptJson, newTokensText] = process.argv.slice(2);
env.allowRemoteModels = false;
env.localModelPath = path.dirname(path.resolve(modelDir));
const model = await AutoModelForCausalLM.from_pretrained(path.basename(modelDir), { dtype: variant, device: "cpu" });
const prompt = JSON.parse(promptJson);
const newTokens = Number(newTokensText);
const inputs = () => ({
  input_ids: new Tensor("int64", BigInt64Array.from(prompt.map(BigInt)), [1, prompt.length]),
  attention_mask: new Tensor("int64", BigInt64Array.from(prompt.map(() => 1n)), [1, prompt.length]),
});
const run = async (count) => {
  const started = performance.now();
  const out = await model.generate({ ...inputs(), do_sample: false, max_new_tokens: count, eos_token_id: null });
  return { ms: performance.now() - started, ids: Array.from(out.data.slice(prompt.length), Number) };
};
await run(2); // warm-up
let first = { ms: Infinity }, full = { ms: Infinity };
for (let i = 0; i < 3; i++) {
  const a = await run(1);
  if (a.ms < first.ms) first = a;
  const b = await run(newTokens);
  if (b.ms < full.ms) full = b;
}
console.log(JSON.stringify({
  ids: full.ids,
  prefill_tokens_per_s: prompt.length / (first.ms / 1000),
  decode_tokens_per_s: (newTokens - 1) / ((full.ms - first.ms) / 1000),
  ttft_ms: first.ms,
  peak_rss_mb: process.resourceUsage().maxRSS / 1024,
}));
