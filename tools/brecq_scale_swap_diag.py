#!/usr/bin/env python3
"""tools/brecq_scale_swap_diag.py BASE_RUN LEARNED_RUN [VAL_FOLDER]: diagnostic for docs/results.md
(issue 4). Both runs are finished qdrop-gpu runs of the same model and weights (e.g. BRECQ "stage 1
only" and full BRECQ). Evaluates BASE_RUN's QDQ model with ONNX Runtime on the first 300 test
images of each class, then with all, and with each single, activation quantizer's
scale/clip/zero-point taken from LEARNED_RUN, to show which learned scale changes the accuracy."""
import json, os, sys, numpy as np, onnx, onnxruntime as ort
from onnx import numpy_helper
from PIL import Image
RA, RB = sys.argv[1].rstrip('/') + '/', sys.argv[2].rstrip('/') + '/'
base=onnx.load(RA+'model_qdq.onnx')
A=json.load(open(RA+'encodings.json'))['activations']
B=json.load(open(RB+'encodings.json'))['activations']
bm=onnx.load(RB+'model_qdq.onnx'); binit={i.name:i for i in bm.graph.initializer}
val=sys.argv[3] if len(sys.argv) > 3 else os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'assets', 'cifar10', 'test')
classes=sorted(d for d in os.listdir(val) if os.path.isdir(os.path.join(val,d)))
items=[]
for ci,c in enumerate(classes):
    fs=sorted(os.listdir(os.path.join(val,c)))
    items += [(os.path.join(val,c,f),ci) for f in fs[:300]]
mean=np.array([0.485,0.456,0.406],np.float32); std=np.array([0.229,0.224,0.225],np.float32)
X=np.stack([((np.asarray(Image.open(p).convert('RGB'),np.float32)/255-mean)/std).transpose(2,0,1) for p,_ in items]).astype(np.float32)
Y=np.array([c for _,c in items])
def acc(m):
    so=ort.SessionOptions(); so.intra_op_num_threads=1
    s=ort.InferenceSession(m.SerializeToString(), so, providers=['CPUExecutionProvider'])
    out=np.concatenate([s.run(None,{s.get_inputs()[0].name:X[i:i+500]})[0] for i in range(0,len(X),500)])
    return 100*np.mean(out.argmax(1)==Y)
# map tensor name -> scale initializer of its QuantizeLinear
init={i.name:i for i in base.graph.initializer}
q={n.input[0]:n.input[1] for n in base.graph.node if n.op_type=='QuantizeLinear'}
def with_scales(names):
    m=onnx.ModelProto(); m.CopyFrom(base)
    ini={i.name:i for i in m.graph.initializer}
    for a,b in zip(A,B):
        if a['name'] in names:
            for suf in ('_scale','_clip_max','_clip_min','_zero_point'):
                if a['name']+suf in ini: ini[a['name']+suf].CopyFrom(binit[a['name']+suf])
    return m
print('images', len(X))
print('base', acc(base))
print('all learned', acc(with_scales({a['name'] for a in A})))
for a,b in zip(A,B):
    print(f"only {a['name'][:38]:38s} x{b['scale']/a['scale']:.2f}: {acc(with_scales({a['name']})):.2f}")
    sys.stdout.flush()
