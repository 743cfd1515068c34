"""Write the bundle's sample input: one axial slice of the MNI152 T1 template (nilearn) with a click in the left
precentral gyrus (AAL3), from the folder scripts/prepare_data.py fills. Prints the click for inference.json."""

from __future__ import annotations

import argparse
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy.ndimage import distance_transform_edt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="data/prepared", help="prepared data folder")
    parser.add_argument("--out", default="bundle/docs/samples/brain_mr_axial.nii.gz")
    parser.add_argument("--slice", type=int, default=None, help="axial index (default: most precentral voxels)")
    args = parser.parse_args()
    t1 = nib.load(Path(args.data) / "brain/mni152_t1.nii.gz")
    atlas = np.asarray(nib.load(Path(args.data) / "brain/aal3.nii.gz").dataobj)
    region = atlas == 1  # Precentral_L
    k = args.slice if args.slice is not None else int(np.argmax(region.sum((0, 1))))
    image = np.asarray(t1.dataobj)[:, :, k].astype(np.float32)
    inside = distance_transform_edt(region[:, :, k])
    i, j = np.unravel_index(np.argmax(inside), inside.shape)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(image, t1.affine), args.out)
    print(f"wrote {args.out} (axial slice {k}, shape {image.shape}); left precentral click (i, j) = ({i}, {j})")


if __name__ == "__main__":
    main()
