// Astrid's compute worker: loads the same wasm module as the page and runs the engine
// (model loading, Integrated Gradients) off the main thread, so the page stays responsive.
// Protocol: {id, kind, ...} in; {id, ok: true, result} or {id, ok: false, error} out, and
// for explain, {id, progress: [done, total]} after each batch of interpolation points;
// without: a model's probabilities with some tokens erased.
import init, { initBackend, loadModel, explain, probabilitiesWithout } from './pkg/web.js';

const ready = init();

let adapterName = null;
let adapterIsSoftware = false;

// Why WebGPU cannot be used here, or null when an adapter is available (named in adapterName).
async function webgpuProblem() {
  if (!('gpu' in navigator) || !navigator.gpu) return 'this browser has no WebGPU (navigator.gpu is missing)';
  try {
    const adapter = await navigator.gpu.requestAdapter();
    if (!adapter) return 'the browser offers no WebGPU adapter';
    const info = adapter.info || {};
    const software = adapter.isFallbackAdapter || info.isFallbackAdapter || /swiftshader|llvmpipe|lavapipe/i.test(`${info.architecture} ${info.description}`);
    adapterName = [info.vendor, info.architecture, info.description].filter(Boolean).join(' ') || 'unknown adapter';
    adapterIsSoftware = software;
    if (software) adapterName += ' (software rendering, slow)';
    return null;
  } catch (e) {
    return `requesting a WebGPU adapter failed: ${e}`;
  }
}

async function handle(data) {
  await ready;
  switch (data.kind) {
    case 'init': {
      // backend: 'auto' (WebGPU on a hardware adapter), 'webgpu' (any adapter) or 'cpu'.
      let problem = data.backend === 'cpu' ? 'CPU chosen in the link (backend=cpu)' : await webgpuProblem();
      if (problem === null && data.backend === 'auto' && adapterIsSoftware) {
        problem = `the only WebGPU adapter is software rendering (${adapterName}), slower than WebAssembly on the CPU; add backend=webgpu to the link to use it anyway`;
      }
      const backend = await initBackend(problem === null);
      return { backend, adapter: backend === 'webgpu' ? adapterName : null, problem: backend === 'webgpu' ? null : (problem ?? backend) };
    }
    case 'load':
      loadModel(data.name, data.config, new Uint8Array(data.weights), new Uint8Array(data.tokenizer), data.meta);
      return null;
    case 'explain': {
      const start = performance.now();
      const progress = (done, total) => self.postMessage({ id: data.id, progress: [done, total] });
      const json = await explain(data.name, data.text, data.options, progress);
      return { json, ms: performance.now() - start };
    }
    case 'without': {
      // Forward passes only: the model's probabilities with the given tokens erased.
      const probs = await probabilitiesWithout(data.name, new Uint32Array(data.ids), new Uint32Array(data.positions), data.erasure);
      return Array.from(probs);
    }
    default:
      throw new Error(`unknown request ${data.kind}`);
  }
}

self.onmessage = async ({ data }) => {
  try {
    self.postMessage({ id: data.id, ok: true, result: await handle(data) });
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    self.postMessage({ id: data.id, ok: false, error: message });
  }
};
