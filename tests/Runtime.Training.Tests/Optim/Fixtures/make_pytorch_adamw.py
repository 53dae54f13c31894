import torch,json,base64,math,os,struct
S=[("model.layers.0.self_attn.q_proj.lora_A.weight",[4,16],1),("model.layers.0.self_attn.q_proj.lora_B.weight",[16,4],1),("model.layers.0.mlp.down_proj.weight",[37,29],1),("model.layers.0.input_layernorm.weight",[16],0),("model.norm.weight",[16],0)]
def V(s,c,m,o,d):return (((torch.arange(torch.Size(s).numel())*c[0]+c[1])%m-o).float()/d).reshape(s)
def P(k,s):return V(s,(37,k*11),101,50,64.)
def G(k,s,t):return V(s,(53,t*29+k*7),97,48,128.)
def b(t):
 l=t.detach().flatten().tolist();return base64.b64encode(struct.pack("<%df"%len(l),*l)).decode()
def lam(t,W=2,N=8):
 if t<W:return float(t)/float(max(1,W))
 p=float(t-W)/float(max(1,N-W));return max(0.0,0.5*(1.0+math.cos(math.pi*float(0.5)*2.0*p)))
lrs=[1e-2*lam(t) for t in range(8)]
R={"torch":torch.__version__,"lrs":lrs,"tensors":[[n,s,d] for n,s,d in S]}
for fe in (False,True):
 ps=[P(k,s).requires_grad_() for k,(n,s,d) in enumerate(S)]
 o=torch.optim.AdamW([{"params":[p for p,x in zip(ps,S) if x[2]],"weight_decay":0.01},{"params":[p for p,x in zip(ps,S) if not x[2]],"weight_decay":0.0}],lr=lrs[0],betas=(0.9,0.999),eps=1e-8,foreach=fe)
 for t in range(8):
  for g in o.param_groups:g["lr"]=lrs[t]
  for k,p in enumerate(ps):p.grad=G(k,S[k][1],t)
  o.step()
 R["foreach" if fe else "single"]={n:[b(p),b(o.state[p]["exp_avg"]),b(o.state[p]["exp_avg_sq"])] for (n,s,d),p in zip(S,ps)}
ps=[P(k,s).requires_grad_() for k,(n,s,d) in enumerate(S)]
for k,p in enumerate(ps):p.grad=G(k,S[k][1],1)
tn=torch.nn.utils.clip_grad_norm_(ps,0.5)
R["clip"]={"max_norm":0.5,"total_norm":tn.item(),"grads":{n:b(p.grad) for (n,s,d),p in zip(S,ps)}}
json.dump(R,open(os.environ["OUT"]+"/pytorch-adamw.json","w"),indent=1)
print(R["torch"],R["foreach"]==R["single"],lrs,tn.item())
