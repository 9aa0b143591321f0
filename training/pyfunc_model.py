"""The registered twin as an MLflow pyfunc model (MLflow "models from code": this file is copied
into each model version and needs only mlflow, torch and transformers, not the platform).

`mlflow.pyfunc.load_model("models:/twin-<slug>@champion").predict(pd.DataFrame({"question": [...]}))`
answers each question in the author's voice with the fine-tuned weights (the persona prompt the
model was trained with, no retrieval: the platform's API adds sources and citations). The weights
are the model version's `artifacts/model` folder, a plain Hugging Face checkpoint.
"""

from __future__ import annotations

import mlflow
import pandas as pd


class TwinChatModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder = context.artifacts["model"]
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
        self.system_prompt = str((context.model_config or {}).get("system_prompt", ""))

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> list[str]:
        import torch

        max_new_tokens = int((params or {}).get("max_new_tokens", 128))
        answers = []
        for question in model_input["question"]:
            messages = [{"role": "user", "content": str(question)}]
            if self.system_prompt:
                messages.insert(0, {"role": "system", "content": self.system_prompt})
            encoded = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                         return_dict=True)
            with torch.no_grad():
                output = self.model.generate(**encoded, max_new_tokens=max_new_tokens, do_sample=False,
                                             pad_token_id=self.tokenizer.eos_token_id)
            answers.append(self.tokenizer.decode(output[0, encoded["input_ids"].shape[1]:], skip_special_tokens=True).strip())
        return answers


mlflow.models.set_model(TwinChatModel())
