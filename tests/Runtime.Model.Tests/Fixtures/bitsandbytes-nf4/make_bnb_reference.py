# Run on a machine with PyTorch + CUDA, with the bitsandbytes Python package (no native library needed) beside
# this file; writes $OUT/info.json, which was then trimmed to reference.json (four cases, base64). See README.md.
import json, os, sys, traceback, subprocess
out = os.environ["OUT"]; here = os.path.dirname(os.path.abspath(__file__))
info = {}
def hexof(t):
    import torch
    return bytes(t.detach().cpu().contiguous().view(torch.uint8).flatten().tolist()).hex()
import torch
info["torch"] = torch.__version__
try:
    subprocess.run(["nvcc", "-O2", "-o", "/tmp/lit", os.path.join(here, "nvcc_literals.cu")], check=True, capture_output=True, timeout=120)
    info["nvcc_literals"] = subprocess.run(["/tmp/lit"], capture_output=True, text=True, timeout=30).stdout
except Exception:
    info["nvcc_error"] = traceback.format_exc()
try:
    res = {}
    for L in ["-0.8480964004993439", "0.1202552504837513", "0.5016634166240692", "0.8614784181118011"]:
        fn = torch.cuda.jiterator._create_jit_fn("template <typename T> T thr(T x) { return x > " + L + "f ? T(1) : T(0); }")
        v = torch.tensor(float(L), dtype=torch.float32)
        c = torch.stack([torch.nextafter(v, torch.tensor(-2.0)), v, torch.nextafter(v, torch.tensor(2.0))])
        res[L] = {"cands": [repr(x) for x in c.tolist()], "gt": fn(c.cuda()).cpu().tolist()}
    info["nvrtc_literals"] = res
except Exception:
    info["nvrtc_error"] = traceback.format_exc()
try:
    from transformers import BitsAndBytesConfig
    c = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.bfloat16)
    info["bnb_config_to_dict"] = json.dumps(c.to_dict(), sort_keys=True)
    import transformers; info["transformers"] = transformers.__version__
except Exception:
    info["transformers_error"] = traceback.format_exc()
sys.path.insert(0, here)
try:
    import bitsandbytes as bnb, bitsandbytes.functional as F
    info["bnb"] = bnb.__version__
    info["dynamic_map"] = hexof(F.create_dynamic_map(signed=True))
    info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    code = F.get_4bit_type("nf4", device="cpu")
    mids = (code[:-1] + code[1:]) / 2
    vals = [1.0]
    for t in mids:
        vals += [torch.nextafter(t, torch.tensor(-2.0)).item(), t.item(), torch.nextafter(t, torch.tensor(2.0)).item()]
    while len(vals) % 64: vals.append(0.0)
    torch.manual_seed(0)
    cases = {"probe": torch.tensor(vals).reshape(1, -1), "rand": torch.randn(64, 200), "odd": torch.randn(7, 67) * 3,
             "bf16": torch.randn(300, 64).to(torch.bfloat16), "zeros": torch.zeros(2, 64)}
    cr = {}
    for name, w in cases.items():
        r = {"dtype": str(w.dtype), "shape": list(w.shape), "input": hexof(w)}
        try:
            q, st = F.quantize_4bit(w, blocksize=64, compress_statistics=True, quant_type="nf4")
            r["packed_shape"] = list(q.shape)
            d = st.as_dict(packed=True)
            r["keys"] = list(d.keys())
            for k, v in d.items():
                r[k] = bytes(v.tolist()).decode() if "quant_state" in k else hexof(v)
            r["deq_bf16"] = hexof(F.dequantize_4bit(q, st, quant_type="nf4").to(torch.bfloat16))
            q2, st2 = F.quantize_4bit(w, blocksize=64, compress_statistics=False, quant_type="nf4")
            r["plain_absmax"] = hexof(st2.absmax); r["plain_packed"] = hexof(q2)
            r["plain_json"] = bytes(st2.as_dict(packed=True)["quant_state.bitsandbytes__nf4"].tolist()).decode()
        except Exception:
            r["error"] = traceback.format_exc()
        cr[name] = r
    info["cases"] = cr
    try:
        lin = bnb.nn.Linear4bit(128, 64, bias=False, compute_dtype=torch.bfloat16, compress_statistics=True, quant_type="nf4")
        lin = lin.to("cpu")
        sd = lin.state_dict()
        info["linear4bit_state_dict"] = {k: [str(v.dtype), list(v.shape)] for k, v in sd.items()}
    except Exception:
        info["linear4bit_error"] = traceback.format_exc()
except Exception:
    info["bnb_error"] = traceback.format_exc()
json.dump(info, open(os.path.join(out, "info.json"), "w"), indent=1)
short = {k: v for k, v in info.items() if k not in ("cases", "dynamic_map")}
print(json.dumps(short, indent=1)[:8000])
for n, r in info.get("cases", {}).items(): print(n, r.get("error", "ok")[:2000], r.get("keys"), r.get("packed_shape"))
