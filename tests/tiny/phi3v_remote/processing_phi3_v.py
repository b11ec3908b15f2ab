"""Processor of the tiny Phi-3-V test model (remote code).

Test fixture written for descry, keeping the interface of the Phi-3.5-vision remote processor:
one prompt per call with ``<|image_N|>`` placeholders, each expanded to ``num_img_tokens`` copies of
``-N`` in ``input_ids``; a fixed ``__call__`` signature (no ``padding_side``, no batch of prompts).
"""

import re

import torch
import transformers
from transformers.feature_extraction_utils import BatchFeature
from transformers.processing_utils import ProcessorMixin
from transformers.utils import TensorType

from .image_processing_phi3_v import Phi3VImageProcessor

transformers.Phi3VImageProcessor = Phi3VImageProcessor

IMAGE_TAG = re.compile(r"<\|image_\d+\|>")


class Phi3VProcessor(ProcessorMixin):
    attributes = ["image_processor", "tokenizer"]
    image_processor_class = "Phi3VImageProcessor"
    tokenizer_class = ("LlamaTokenizer", "LlamaTokenizerFast")
    special_image_token = "<|image|>"

    def __init__(self, image_processor, tokenizer):
        self.image_processor = image_processor
        self.tokenizer = tokenizer
        self.num_img_tokens = image_processor.num_img_tokens

    def __call__(
        self,
        text,
        images=None,
        padding=False,
        truncation=None,
        max_length=None,
        return_tensors=TensorType.PYTORCH,
    ):
        image_inputs = self.image_processor(images, return_tensors=return_tensors) if images is not None else {}
        return self._convert_images_texts_to_inputs(image_inputs, text, padding, truncation, max_length, return_tensors)

    def _convert_images_texts_to_inputs(self, images, text, padding, truncation, max_length, return_tensors):
        if not len(images):
            encoded = self.tokenizer(
                text, padding=padding, truncation=truncation, max_length=max_length, return_tensors=return_tensors
            )
            return BatchFeature(data={**encoded})
        if not isinstance(text, str):
            raise TypeError("Phi3VProcessor takes one prompt string per call")
        tags = IMAGE_TAG.findall(text)
        ids = [int(tag[len("<|image_") : -2]) for tag in tags]
        if sorted(set(ids)) != list(range(1, len(set(ids)) + 1)):
            raise ValueError(f"image tags must be numbered from 1 without gaps, got {tags}")
        if len(set(ids)) != len(images["pixel_values"]):
            raise ValueError(f"{len(set(ids))} image tags but {len(images['pixel_values'])} images")
        chunks = [self.tokenizer(chunk, add_special_tokens=False).input_ids for chunk in IMAGE_TAG.split(text)]
        input_ids = []
        for index, chunk in enumerate(chunks):
            input_ids.extend(chunk)
            if index < len(ids):
                image_id = ids[index]
                input_ids.extend([-image_id] * images["num_img_tokens"][image_id - 1])
        input_ids = torch.tensor(input_ids, dtype=torch.long).unsqueeze(0)
        attention_mask = (input_ids > -1000000).long()
        return BatchFeature(
            data={
                "input_ids": input_ids,
                "attention_mask": attention_mask,
                "pixel_values": images["pixel_values"],
                "image_sizes": images["image_sizes"],
            }
        )

    def batch_decode(self, *args, **kwargs):
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args, **kwargs):
        return self.tokenizer.decode(*args, **kwargs)

    @property
    def model_input_names(self):
        return list(dict.fromkeys(self.tokenizer.model_input_names + self.image_processor.model_input_names))
