# Loads the files Runtime wrote (rt init, a PEFT adapter trained by rt finetune, rt merge) with transformers and PEFT,
# unchanged, and compares per-token log-probabilities with what `rt score` computed on the same files.
import json, os, sys, warnings
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM
from peft import PeftModel

here = os.path.dirname(os.path.abspath(__file__))
out = os.environ.get("OUT", here)
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
rows = [json.loads(l)["input_ids"] for l in open(os.path.join(here, "rows.jsonl"))]

def rt_scores(name):
    return [json.loads(l) for l in open(os.path.join(here, f"rt-{name}.jsonl"))]

def logprobs(model, device):
    result = []
    with torch.no_grad():
        for ids in rows:
            x = torch.tensor([ids], device=device)
            logits = model(input_ids=x).logits.float()
            lp = torch.log_softmax(logits[0, :-1], dim=-1).gather(1, x[0, 1:, None])[:, 0]
            result.append(lp.cpu().double())
    return result

def compare(mine, theirs):
    worst, loss_worst = 0.0, 0.0
    for m, t in zip(mine, theirs):
        r = torch.tensor(t["token_logprobs"], dtype=torch.float64)
        worst = max(worst, (m - r).abs().max().item())
        loss_worst = max(loss_worst, abs(-m.mean().item() - t["loss"]))
    return {"max_abs_logprob_diff": worst, "max_abs_loss_diff": loss_worst}

report = {"torch": torch.__version__}
import transformers, peft
report["transformers"], report["peft"] = transformers.__version__, peft.__version__
devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
for device in devices:
    r = {}
    base = AutoModelForCausalLM.from_pretrained(os.path.join(here, "tiny"), torch_dtype=torch.float32, attn_implementation="eager").to(device).eval()
    r["rt_init_model"] = compare(logprobs(base, device), rt_scores("base"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        adapted = PeftModel.from_pretrained(base, os.path.join(here, "adapter")).to(device).eval()
    r["peft_warnings"] = [str(w.message)[:300] for w in caught]
    # Every tensor of the file landed in the model under PEFT's own names.
    saved = load_file(os.path.join(here, "adapter", "adapter_model.safetensors"))
    params = {k.replace(".default", ""): v for k, v in adapted.named_parameters() if "lora_" in k}
    r["adapter_tensors"] = len(saved)
    r["adapter_tensors_missing_in_model"] = [k for k in saved if k not in params]
    r["adapter_params_not_in_file"] = [k for k in params if k not in saved]
    r["adapter_max_abs_weight_diff"] = max((params[k].detach().cpu().float() - v.float()).abs().max().item() for k, v in saved.items() if k in params)
    r["peft_adapter"] = compare(logprobs(adapted, device), rt_scores("adapter"))
    merged_in_memory = adapted.merge_and_unload()
    r["peft_merge_and_unload_vs_rt_adapter"] = compare(logprobs(merged_in_memory, device), rt_scores("adapter"))
    merged = AutoModelForCausalLM.from_pretrained(os.path.join(here, "merged"), torch_dtype=torch.float32, attn_implementation="eager").to(device).eval()
    r["rt_merge_model"] = compare(logprobs(merged, device), rt_scores("merged"))
    report[device] = r
    print(device, json.dumps(r, indent=1), flush=True)
if torch.cuda.is_available():
    report["gpu"] = torch.cuda.get_device_name(0)
json.dump(report, open(os.path.join(out, "interop.json"), "w"), indent=1)
print(json.dumps({k: v for k, v in report.items() if k not in devices}))
