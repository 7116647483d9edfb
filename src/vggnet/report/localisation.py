"""Localisation figures: test images with their ground-truth (green) and predicted (red) boxes."""

from __future__ import annotations

import io

import torch
from torchvision.utils import draw_bounding_boxes, make_grid

COLUMNS = 8


def box_grid(samples: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], columns: int = COLUMNS) -> bytes:
    """PNG of a grid of (uint8 image [C, H, W], ground-truth boxes [m, 4], predicted box [4])."""
    from PIL import Image

    side = max(max(img.shape[-2:]) for img, _, _ in samples)
    tiles = []
    for image, gt, pred in samples:
        rgb = image.expand(3, -1, -1) if image.shape[0] == 1 else image
        scale = max(1, 128 // side)  # small canvases are enlarged so the boxes stay visible
        if scale > 1:
            rgb = rgb.repeat_interleave(scale, -1).repeat_interleave(scale, -2)
        tile = draw_bounding_boxes(rgb.contiguous(), gt.reshape(-1, 4) * scale, colors="lime", width=2)
        tile = draw_bounding_boxes(tile, pred.reshape(1, 4) * scale, colors="red", width=2)
        canvas = torch.zeros(3, side * scale, side * scale, dtype=torch.uint8)
        canvas[:, :tile.shape[1], :tile.shape[2]] = tile[:, :side * scale, :side * scale]
        tiles.append(canvas)
    grid = make_grid(tiles, nrow=columns, padding=2)
    buffer = io.BytesIO()
    Image.fromarray(grid.permute(1, 2, 0).numpy()).save(buffer, format="PNG")
    return buffer.getvalue()
