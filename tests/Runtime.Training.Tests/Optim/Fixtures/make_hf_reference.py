import torch,json,os,math,traceback
import transformers as T
R={"transformers":T.__version__}
def sec(f):
 try:f()
 except Exception:R.setdefault("errors",[]).append(traceback.format_exc())
def sched():
 p=torch.nn.Parameter(torch.zeros(1))
 for k in ["cosine","linear","constant_with_warmup"]:
  for W,N in [(3,100),(0,10),(5,5)]:
   o=torch.optim.AdamW([p],lr=2e-4);s=T.get_scheduler(k,o,num_warmup_steps=W,num_training_steps=N);L=[]
   for t in range(N+3):L.append(s.get_last_lr()[0]);o.step();s.step()
   R[f"{k}/{W}/{N}"]=L
def warm():
 A={}
 for r in [0.03,0.07,0.1,0.0]:
  for n in [100,1000,7]:
   try:a=T.TrainingArguments(output_dir="/tmp/o",warmup_ratio=r,report_to="none")
   except TypeError:a=T.TrainingArguments(output_dir="/tmp/o",warmup_steps=r,report_to="none")
   A[f"{r}/{n}"]=a.get_warmup_steps(n)
 R["warmup"]=A
def names():
 c=T.LlamaConfig(vocab_size=32,hidden_size=16,intermediate_size=32,num_hidden_layers=1,num_attention_heads=2,num_key_value_heads=1)
 m=T.LlamaForCausalLM(c);tr=T.Trainer.__new__(T.Trainer)
 R["full"]=[[n,n in set(tr.get_decay_parameter_names(m))] for n,_ in m.named_parameters()]
 import peft
 q=peft.get_peft_model(m,peft.LoraConfig(r=2,target_modules=["q_proj","v_proj"]));d=set(tr.get_decay_parameter_names(q))
 R["lora"]=[[n,n in d] for n,x in q.named_parameters() if x.requires_grad]
sec(sched);sec(warm);sec(names)
json.dump(R,open(os.environ["OUT"]+"/hf-reference.json","w"),indent=1)
print(R.get("errors"),R.get("warmup"),R.get("full"),R.get("lora"))
