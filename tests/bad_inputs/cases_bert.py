"""Bad-input cases of a BERT run (model.type bert, the tiny random SST-2 classifier of
tests/fixtures/bert/sst2_tiny): an image task (78), a quantization mode the BERT family does
not run (65), a model directory without its weights (66). Each exits before any output."""
import os
import shutil


def _cfg(m, **over):
    fix = os.path.join(m.SRC, "tests", "fixtures", "bert")
    dev = os.path.join(m.SRC, "assets", "sst2", "sst2_dev.tsv")
    c = {"model": {"path": over.get("model", os.path.join(fix, "sst2_tiny")), "type": "bert"},
         "data": {"calib_path": dev, "val_path": dev, "task": over.get("task", "sst2"), "max_seq_len": 64},
         "quant": {"w_qconfig": {"bit": 4}, "a_qconfig": {"bit": 8}, "calibrate": 32, "act_calib_samples": 16,
                   "mode": over.get("mode", "qdrop"), "recon": {"iters": 2, "batch_size": 4}},
         "process": {"threads": 1}, "output": {"dir": "{out}"}}
    return c


def _prep_no_weights(m):
    def prep(d):
        src = os.path.join(m.SRC, "tests", "fixtures", "bert", "sst2_tiny")
        dst = os.path.join(d, "bert_no_weights")
        os.makedirs(dst)
        for f in ("config.json", "vocab.txt", "tokenizer_config.json"):
            shutil.copy(os.path.join(src, f), dst)
        return {"model_dir": dst}
    return prep


def cases(m):
    return [
        m.Case("bert_task_unknown", 78, r"data\.task classification: model\.type bert runs the stsb or sst2 task",
               config=_cfg(m, task="classification"), what="BERT run with data.task classification (an image task)"),
        m.Case("bert_mode_brecq", 65, r"quant\.mode brecq: model\.type bert supports qdrop, nodrop and nearest",
               config=_cfg(m, mode="brecq"), what="BERT run with quant.mode brecq"),
        m.Case("bert_no_weights", 66, r"bert_no_weights/model\.safetensors",
               config=_cfg(m, model="{model_dir}"), prep=_prep_no_weights(m), what="BERT directory without model.safetensors"),
    ]
