"""Image processor of the tiny Phi-3-V test model: the HD transform with ``num_crops`` (remote code).

Test fixture written for descry. An image is scaled so that at most ``num_crops`` square crops of
``crop_size`` cover it, padded with white to whole crops, cut into those crops, and preceded by a
global view of the whole image; every image is padded to ``num_crops + 1`` crops.
"""

import math

import numpy as np
import torch
from PIL import Image
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, make_list_of_images, valid_images


def hd_size(width, height, num_crops, crop):
    """Size of the image after the HD transform: (width, height), both whole multiples of ``crop``."""
    transposed = width < height
    if transposed:
        width, height = height, width
    ratio = width / height
    scale = 1
    while (scale + 1) * math.ceil((scale + 1) / ratio) <= num_crops:
        scale += 1
    new_width = scale * crop
    new_height = max(1, int(new_width / ratio))
    padded_height = math.ceil(new_height / crop) * crop
    return (padded_height, new_width) if transposed else (new_width, padded_height)


class Phi3VImageProcessor(BaseImageProcessor):
    model_input_names = ["pixel_values"]

    def __init__(
        self,
        num_crops=1,
        crop_size=336,
        num_img_tokens=144,
        image_mean=None,
        image_std=None,
        do_convert_rgb=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_crops = num_crops
        self.crop_size = crop_size
        self.num_img_tokens = num_img_tokens
        self.image_mean = image_mean if image_mean is not None else OPENAI_CLIP_MEAN
        self.image_std = image_std if image_std is not None else OPENAI_CLIP_STD
        self.do_convert_rgb = do_convert_rgb

    @property
    def merged_side(self):
        return int(math.isqrt(self.num_img_tokens))

    def tokens_for_hd_size(self, width, height):
        rows, cols = height // self.crop_size, width // self.crop_size
        side = self.merged_side
        return (rows * cols + 1) * side * side + 1 + (rows + 1) * side

    def calc_num_image_tokens_from_image_size(self, width, height):
        """Image tokens an image of this size turns into."""
        return self.tokens_for_hd_size(*hd_size(width, height, self.num_crops, self.crop_size))

    def calc_num_image_tokens(self, images):
        images = make_list_of_images(images)
        return [self.calc_num_image_tokens_from_image_size(*im.size) for im in images]

    def _hd_transform(self, image):
        width, height = hd_size(image.width, image.height, self.num_crops, self.crop_size)
        if image.width >= image.height:
            scaled_w, scaled_h = width, min(height, max(1, int(width * image.height / image.width)))
        else:
            scaled_w, scaled_h = min(width, max(1, int(height * image.width / image.height))), height
        resized = image.resize((scaled_w, scaled_h), Image.BILINEAR)
        canvas = Image.new("RGB", (width, height), (255, 255, 255))
        canvas.paste(resized, ((width - scaled_w) // 2, (height - scaled_h) // 2))
        return canvas

    def _to_tensor(self, image):
        array = np.asarray(image, dtype=np.float32) / 255.0
        array = (array - np.asarray(self.image_mean, dtype=np.float32)) / np.asarray(self.image_std, dtype=np.float32)
        return torch.from_numpy(array).permute(2, 0, 1).contiguous()

    def preprocess(self, images, image_mean=None, image_std=None, do_convert_rgb=None, return_tensors=None):
        images = make_list_of_images(images)
        if not valid_images(images):
            raise ValueError("Invalid image type. Must be of type PIL.Image.Image, numpy.ndarray or torch.Tensor.")
        images = [im.convert("RGB") for im in images]
        crop = self.crop_size
        pixel_values, image_sizes, num_img_tokens = [], [], []
        for image in images:
            hd = self._to_tensor(self._hd_transform(image))
            _, height, width = hd.shape
            rows, cols = height // crop, width // crop
            glb = torch.nn.functional.interpolate(hd.unsqueeze(0), size=(crop, crop), mode="bicubic")
            crops = hd.reshape(3, rows, crop, cols, crop).permute(1, 3, 0, 2, 4).reshape(-1, 3, crop, crop)
            stacked = torch.cat([glb, crops], dim=0)
            padding = torch.zeros(self.num_crops + 1 - stacked.shape[0], 3, crop, crop)
            pixel_values.append(torch.cat([stacked, padding], dim=0))
            image_sizes.append([height, width])
            num_img_tokens.append(self.tokens_for_hd_size(width, height))
        data = {
            "pixel_values": torch.stack(pixel_values),
            "image_sizes": torch.tensor(image_sizes, dtype=torch.long),
            "num_img_tokens": num_img_tokens,
        }
        return BatchFeature(data=data, tensor_type=return_tensors)
