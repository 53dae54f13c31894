"""Reference fixtures computed by Hugging Face transformers / tokenizers (run on the device machine, CPU side).

Writes into $OUT/hf-parity/: micro Llama models saved by save_pretrained, their logits/loss/greedy tokens,
and tokenizer expectations from the Rust `tokenizers` library. Every step is independent and logged.
"""
import json, os, sys, traceback, shutil
import torch

out = "/tmp/hf-parity"
os.makedirs(out, exist_ok=True)
log = open(os.path.join(out, "log.txt"), "w")
def say(*a):
    print(*a); print(*a, file=log); log.flush()

import transformers
from safetensors.torch import save_file
say("torch", torch.__version__, "transformers", transformers.__version__)
torch.set_num_threads(8)

def step(name):
    def wrap(f):
        try:
            f(); say("OK", name)
        except Exception:
            say("FAILED", name); say(traceback.format_exc())
    return wrap

VOCAB = 256
BASE = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=160, num_hidden_layers=3, num_attention_heads=8,
            num_key_value_heads=2, head_dim=8, max_position_embeddings=256, rms_norm_eps=1e-5, rope_theta=10000.0,
            bos_token_id=1, eos_token_id=[2, 3], hidden_act="silu", attention_bias=False, mlp_bias=False)
# original_max 16 with factors 1/4 puts head_dim 8's four frequencies into all three llama3 bands.
ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 16}

def make_config(tied):
    from transformers import LlamaConfig
    kw = dict(BASE, tie_word_embeddings=tied)
    try:
        cfg = LlamaConfig(**kw, rope_scaling=dict(ROPE))
    except Exception:
        cfg = LlamaConfig(**kw, rope_parameters=dict(ROPE, rope_theta=BASE["rope_theta"]))
    return cfg

g = torch.Generator().manual_seed(1234)
ids = torch.randint(4, VOCAB, (2, 12), generator=g)
labels = ids.clone(); labels[0, :5] = -100; labels[1, :3] = -100; labels[1, 9] = -100
results = {"input_ids": ids.tolist(), "labels": labels.tolist()}

def build(tied, seed):
    from transformers import LlamaForCausalLM
    torch.manual_seed(seed)
    cfg = make_config(tied)
    m = LlamaForCausalLM(cfg).float().eval()
    # HF's init leaves norms at one; perturb them so the weight-after-cast order is exercised.
    with torch.no_grad():
        for n, p in m.named_parameters():
            if "norm" in n: p.add_(torch.randn_like(p) * 0.1)
    return m

def run_model(tag, m):
    r = {}
    with torch.no_grad():
        for impl in ["eager", "sdpa"]:
            try:
                m.config._attn_implementation = impl
                for mod in m.modules():
                    if hasattr(mod, "config"): mod.config._attn_implementation = impl
            except Exception: pass
            o = m(input_ids=ids, labels=labels)
            r[f"loss_{impl}"] = float(o.loss)
            save_file({"logits": o.logits.float().contiguous()}, os.path.join(out, f"{tag}.logits.{impl}.safetensors"))
        m.config._attn_implementation = "eager"
        lp = torch.log_softmax(m(input_ids=ids).logits.float(), -1)
        r["token_logprobs"] = lp[:, :-1].gather(-1, ids[:, 1:, None])[..., 0].tolist()
        mb = m.to(torch.bfloat16)
        ob = mb(input_ids=ids)
        save_file({"logits": ob.logits.float().contiguous()}, os.path.join(out, f"{tag}.logits.bf16.safetensors"))
        m.float()
        gen = m.generate(input_ids=ids[:1, :6], max_new_tokens=12, do_sample=False, eos_token_id=None, pad_token_id=0,
                         min_new_tokens=12, use_cache=True)
        r["greedy_prompt"] = ids[:1, :6].tolist()[0]
        r["greedy_tokens"] = gen[0, 6:].tolist()
    results[tag] = r

@step("untied fp32 model")
def _():
    m = build(False, 11)
    m.save_pretrained(os.path.join(out, "micro-untied"), safe_serialization=True)
    run_model("micro-untied", m)

@step("tied model, sharded bf16 save")
def _():
    m = build(True, 22)
    m.save_pretrained(os.path.join(out, "micro-tied"), safe_serialization=True)
    run_model("micro-tied", m)
    mb = build(True, 22).to(torch.bfloat16)
    mb.save_pretrained(os.path.join(out, "micro-tied-bf16-sharded"), safe_serialization=True, max_shard_size="40KB")

@step("peft lora adapter")
def _():
    from peft import LoraConfig, get_peft_model
    m = build(False, 11)
    cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                     "gate_proj", "up_proj", "down_proj"], task_type="CAUSAL_LM")
    torch.manual_seed(33)
    pm = get_peft_model(m, cfg)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_B" in n: p.normal_(0, 0.05)
    pm.eval()
    pm.save_pretrained(os.path.join(out, "micro-untied-lora"))
    with torch.no_grad():
        o = pm(input_ids=ids, labels=labels)
        save_file({"logits": o.logits.float().contiguous()}, os.path.join(out, "micro-untied-lora.logits.safetensors"))
        results["micro-untied-lora"] = {"loss": float(o.loss)}
        merged = pm.merge_and_unload()
        save_file({k: v.contiguous() for k, v in merged.state_dict().items() if "layers.0.self_attn.q_proj" in k},
                  os.path.join(out, "micro-untied-lora.merged-q0.safetensors"))

@step("tokenizer expectations")
def _():
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join("tok", "tokenizer.json"))
    texts = ["Hello world", " Hello  world\n\n", "The year 2024 had 12345 days?!", "naïve café — déjà vu",
             "日本語のテキストです。", "emoji 🤖🚀 and\ttabs", "don't I'll we've THEY'RE", "   leading spaces",
             "line1\r\nline2\n\n\nline3", "<|eot_id|> typed by a user", "a" * 50, "x=1+2*3; // comment",
             "Ελληνικά και Русский", "1234567890", "\u00a0nbsp\u2003emspace"]
    enc = [{"text": t, "ids": tok.encode(t, add_special_tokens=False).ids} for t in texts]
    sp = {str(i): tok.id_to_token(i) for i in range(128000, 128256)}
    import jinja2
    cfg = json.load(open(os.path.join("tok", "tokenizer_config.json")))
    conv = [{"role": "system", "content": " Be brief. "}, {"role": "user", "content": "What is 2+2?"},
            {"role": "assistant", "content": "4\n"}, {"role": "user", "content": "And 3+3?"}]
    env = jinja2.Environment()
    tpl = env.from_string(cfg["chat_template"])
    r3 = tpl.render(messages=conv, bos_token=cfg["bos_token"], add_generation_prompt=True)
    chat = {"messages": conv, "llama3_rendered": r3, "llama3_ids": tok.encode(r3, add_special_tokens=False).ids}
    results["tokenizer"] = {"encodings": enc, "special_tokens": sp, "chat": chat}

json.dump(results, open(os.path.join(out, "expected.json"), "w"), indent=1)
say("wrote", sorted(os.listdir(out)))
