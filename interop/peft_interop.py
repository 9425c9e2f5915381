"""peft_interop.py: proves that adapters saved by memba-wasm load in Python with HF PEFT and give
the same logits (without LIM) as memba-wasm. Run where torch + transformers + peft are installed:

    node interop/make_case.mjs /tmp/interop-case        # here (writes adapters + our logits)
    python3 interop/peft_interop.py /tmp/interop-case   # there (CPU is enough)

PEFT refuses `out_proj` on Mamba models (its fused-kernel guard); on the CPU path transformers
calls out_proj as a module, so the guard is bypassed by hiding the model type while PEFT wraps
the modules. transformers' CPU path never calls dt_proj as a module, so a PEFT LoRA there has no
effect in Python (this engine applies it): the dt_only case shows that, it is not a failure.
"""
import json
import sys

import torch
from safetensors.torch import load_file
from transformers import MambaForCausalLM
import peft
import transformers
from peft import PeftModel


def main(case_dir):
    torch.manual_seed(0)
    ids = torch.tensor(json.load(open(f"{case_dir}/ids.json")))
    ours = load_file(f"{case_dir}/ours_logits.safetensors")
    results = {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__, "cases": {}}
    base = MambaForCausalLM.from_pretrained(f"{case_dir}/base", torch_dtype=torch.float32).eval()
    with torch.no_grad():
        base_logits = base(ids).logits
    d = (base_logits - ours["base"]).abs().max().item()
    results["cases"]["base"] = {"max_abs_diff": d}
    print(f"base model: max|hf - ours| = {d:.3e}")
    for name in ["in_x", "in_out_x", "dt_only"]:
        model = MambaForCausalLM.from_pretrained(f"{case_dir}/base", torch_dtype=torch.float32).eval()
        cfg = json.load(open(f"{case_dir}/{name}/adapter_config.json"))
        bypass = "out_proj" in cfg["target_modules"]
        if bypass:  # PEFT's guard against out_proj on Mamba: hide the model type while wrapping
            model.config.model_type = "mamba_cpu_path"
        pm = PeftModel.from_pretrained(model, f"{case_dir}/{name}").eval()
        if bypass:
            model.config.model_type = "mamba"
        n_lora = sum(1 for n, _ in pm.named_parameters() if "lora_" in n)
        with torch.no_grad():
            logits = pm(ids).logits
        diff = (logits - ours[name]).abs().max().item()
        ref = ours[name].abs().max().item()
        vs_base = (logits - base_logits).abs().max().item()
        ok = diff <= 1e-4 * max(1.0, ref)
        results["cases"][name] = {"targets": cfg["target_modules"], "lora_tensors_loaded": n_lora, "max_abs_diff": diff,
                                   "max_abs_ours": ref, "hf_change_vs_base": vs_base, "match": ok, "out_proj_guard_bypassed": bypass}
        print(f"{name:9s} targets={cfg['target_modules']}: lora tensors {n_lora}, max|hf - ours| = {diff:.3e} "
              f"(max|ours| {ref:.2f}), hf change vs base {vs_base:.3e} -> {'MATCH' if ok else 'DIFFER'}")
    print(json.dumps(results, indent=2))
    json.dump(results, open(f"{case_dir}/peft_interop_results.json", "w"), indent=2)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "interop/case")
