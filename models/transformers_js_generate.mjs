// Greedy generation with transformers.js (the public reference client of these exports) on a local model.
// node models/transformers_js_generate.mjs MODEL_DIR VARIANT '[prompt ids]' NEW_TOKENS [THREADS] [RUNS]
// THREADS: onnxruntime intra-op threads (0 or absent: onnxruntime's default); RUNS: measured runs (default 3,
// the fastest is reported) after a short warm-up. Times come from a streamer: TTFT is the first new token.
// Prints one JSON line: ids, prefill/decode tokens per second, ttft_ms, load_s, peak_rss_mb.
import path from "node:path";
import { createRequire } from "node:module";

const require = createRequire(path.join(path.dirname(new URL(import.meta.url).pathname), ".node", "package.json"));
const { env, AutoModelForCausalLM, Tensor } = await import(require.resolve("@huggingface/transformers"));

const [modelDir, variant, promptJson, newTokensText, threadsText = "0", runsText = "3"] = process.argv.slice(2);
const threads = Number(threadsText);
env.allowRemoteModels = false;
env.localModelPath = path.dirname(path.resolve(modelDir));
const session_options = threads > 0 ? { intraOpNumThreads: threads, interOpNumThreads: 1 } : {};
const loadStart = performance.now();
const model = await AutoModelForCausalLM.from_pretrained(path.basename(modelDir), {
  dtype: variant,
  device: "cpu",
  session_options,
});
const loadMs = performance.now() - loadStart;
const prompt = JSON.parse(promptJson);
const newTokens = Number(newTokensText);
const inputs = (ids) => ({
  input_ids: new Tensor("int64", BigInt64Array.from(ids.map(BigInt)), [1, ids.length]),
  attention_mask: new Tensor("int64", BigInt64Array.from(ids.map(() => 1n)), [1, ids.length]),
});
const run = async (ids, count) => {
  const stamps = [];
  const streamer = { put: () => stamps.push(performance.now()), end: () => {} };
  const started = performance.now();
  const out = await model.generate({ ...inputs(ids), do_sample: false, max_new_tokens: count, eos_token_id: null, streamer });
  const tokens = stamps.slice(1); // the first put is the prompt
  return {
    ids: Array.from(out.data.slice(ids.length), Number),
    ttft: tokens[0] - started,
    decode: tokens.at(-1) - tokens[0],
    total: tokens.at(-1) - started,
  };
};
await run(prompt.slice(0, 8), 2); // warm-up
let best = { total: Infinity };
for (let i = 0; i < Number(runsText); i++) {
  const result = await run(prompt, newTokens);
  if (result.total < best.total) best = result;
}
console.log(JSON.stringify({
  ids: best.ids,
  prefill_tokens_per_s: prompt.length / (best.ttft / 1000),
  decode_tokens_per_s: newTokens > 1 ? (newTokens - 1) / (best.decode / 1000) : 0,
  ttft_ms: best.ttft,
  load_s: loadMs / 1000,
  peak_rss_mb: process.resourceUsage().maxRSS / 1024,
}));
