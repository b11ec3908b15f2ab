"""HD image embedding of the tiny Phi-3-V test model: CLIP features of a global view and sub-crops.

Test fixture written for descry. Image positions are marked in ``input_ids`` by negative ids
(``-1`` for ``<|image_1|>``), as the Phi-3.5-vision remote code does; each crop's patch grid is
merged 2x2, a learnable separator ends every row, and the sub-crop grid comes before the global view.
"""

import torch
from torch import nn
from transformers import CLIPVisionConfig, CLIPVisionModel

MAX_INPUT_ID = int(1e9)


class Phi3ImageEmbedding(nn.Module):
    """Token embeddings with the projected image features written over the image positions."""

    def __init__(self, config, wte=None, **kwargs):
        super().__init__()
        settings = config.img_processor
        if not isinstance(settings, dict) or settings.get("name") != "clip_vision_model":
            raise NotImplementedError(f"img_processor = {settings}, not implemented")
        self.wte = wte
        self.drop = nn.Dropout(config.embd_pdrop)
        self.img_processor = CLIPVisionModel(CLIPVisionConfig(**settings["clip_config"]))
        self.image_dim_out = settings["image_dim_out"]
        self.num_img_tokens = settings["num_img_tokens"]
        self.layer_idx = settings.get("layer_idx", -2)
        vision = self.img_processor.config
        self.crop_size = vision.image_size
        self.merged_side = vision.image_size // vision.patch_size // 2
        self.use_hd_transform = kwargs.get("use_hd_transform", False)
        self.hd_transform_order = kwargs.get("hd_transform_order", "sub_glb")
        merged_dim = self.image_dim_out * 4
        self.glb_GN = nn.Parameter(torch.zeros([1, 1, merged_dim]))
        self.sub_GN = nn.Parameter(torch.zeros([1, 1, 1, merged_dim]))
        self.img_projection = nn.Sequential(
            nn.Linear(merged_dim, config.hidden_size), nn.GELU(), nn.Linear(config.hidden_size, config.hidden_size)
        )

    def get_img_features(self, crops: torch.Tensor) -> torch.Tensor:
        """Patch features (CLS dropped) of the chosen CLIP layer for a stack of crops."""
        out = self.img_processor(crops, output_hidden_states=True)
        return out.hidden_states[self.layer_idx][:, 1:]

    def forward(self, input_ids, pixel_values, image_sizes=None):
        input_ids = input_ids.view(-1, input_ids.shape[-1])
        positions = torch.nonzero((input_ids < 0) & (input_ids > -MAX_INPUT_ID), as_tuple=True)
        has_image = positions[0].numel() > 0
        # like the original, image markers are cleared in place
        input_ids.clamp_min_(0).clamp_max_(self.wte.num_embeddings - 1)
        hidden_states = self.wte(input_ids)
        if has_image:
            if not self.use_hd_transform:
                raise NotImplementedError("only the HD transform is implemented")
            num_images, num_crops = pixel_values.shape[:2]
            dtype = self.img_projection[0].weight.dtype
            crops = pixel_values.flatten(0, 1).to(dtype)
            features = self.get_img_features(crops).reshape(num_images, num_crops, -1, self.image_dim_out)
            projected = self.hd_feature_transform(features, image_sizes)
            hidden_states = hidden_states.index_put(positions, projected.to(hidden_states.dtype), accumulate=False)
        return self.drop(hidden_states)

    def hd_feature_transform(self, features: torch.Tensor, image_sizes) -> torch.Tensor:
        """[sub-crop grid with row separators, global separator, global view with row separators] per image."""
        if self.hd_transform_order != "sub_glb":
            raise NotImplementedError(f"hd_transform_order {self.hd_transform_order!r} not implemented")
        pieces = []
        for index, size in enumerate(image_sizes):
            height, width = int(size[0]), int(size[1])
            rows, cols = height // self.crop_size, width // self.crop_size
            sub = self._merge(features[index, 1 : 1 + rows * cols], rows, cols)
            glb = self._merge(features[index, :1], 1, 1)
            pieces += [self._add_newline(sub), self.glb_GN.squeeze(0), self._add_newline(glb)]
        return self.img_projection(torch.cat(pieces, dim=0))

    def _merge(self, crops: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
        """(rows*cols, side*side, C) -> (rows*m, cols*m, 4C) with 2x2 neighbouring patches stacked."""
        count, _, channels = crops.shape
        m = self.merged_side
        grid = crops.reshape(count, m, 2, m, 2, channels).permute(0, 1, 3, 2, 4, 5).reshape(count, m, m, 4 * channels)
        grid = grid.reshape(rows, cols, m, m, 4 * channels).permute(0, 2, 1, 3, 4)
        return grid.reshape(rows * m, cols * m, 4 * channels)

    def _add_newline(self, grid: torch.Tensor) -> torch.Tensor:
        height = grid.shape[0]
        newline = self.sub_GN.squeeze(0).expand(height, -1, -1)
        return torch.cat([grid, newline], dim=1).reshape(-1, grid.shape[-1])
