"""Image conversion cost per 1280x720 rgb8 frame, both ways (target: <= 2 ms each).

Prints the median of 50 runs after a warm-up, next to the target and the naive baselines.
"""

import numpy as np

from lens_ros.conversions.image import image_to_rgb, mask_to_image, numpy_to_image, rgb_to_image
from timing import median_ms


def main():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    msg = rgb_to_image(rgb)
    bgr_msg = numpy_to_image(np.ascontiguousarray(rgb[..., ::-1]), "bgr8")
    mask = rng.random((720, 1280)) > 0.5
    to_msg = median_ms(lambda: rgb_to_image(rgb))
    to_np = median_ms(lambda: image_to_rgb(msg))
    bgr_np = median_ms(lambda: image_to_rgb(bgr_msg))
    mask_msg = median_ms(lambda: mask_to_image(mask))
    from sensor_msgs.msg import Image
    naive = median_ms(lambda: setattr(Image(), "data", rgb.tobytes()), repeats=10)
    print("1280x720 frame, median of 50 runs (target <= 2 ms each way):")
    print(f"  numpy rgb8 -> Image : {to_msg:6.2f} ms")
    print(f"  Image rgb8 -> numpy : {to_np:6.2f} ms (zero-copy view)")
    print(f"  Image bgr8 -> RGB   : {bgr_np:6.2f} ms (channel swap copy)")
    print(f"  bool mask -> mono8  : {mask_msg:6.2f} ms")
    print(f"  baseline: Image().data = tobytes() alone {naive:6.2f} ms")


if __name__ == "__main__":
    main()
