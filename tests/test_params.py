"""Parameter counts on the tiny codec, against a hand count.

Tiny codec: Conv2d(3→4,k3) = 4·3·9 + 4 = 112; Linear(4→4) = 16 + 4 = 20, shared by encoder and
decoder; gain = 4, shared by both sides of one model, different between the two rate points;
ConvTranspose2d(4→3,k4) = 4·3·16 + 3 = 195; functional conv weight 3·3·3·3 = 81.
"""

import torch

from profiler.params import count_model, total_over_rates
from profiler.submission import load_entry, load_submission

CONV, LINEAR, GAIN, DECONV, POST = 112, 20, 4, 195, 81


def _models(tiny_dir):
    sub = load_submission(tiny_dir)
    build = load_entry(sub)
    return [count_model(c.encoder, c.decoder) for c in (build(r, torch.device("cpu")) for r in sub.rates)]


def test_parts_and_model_count_shared_module_once(tiny_dir):
    m = _models(tiny_dir)[0]
    assert m.encoder == CONV + LINEAR + GAIN == 136
    assert m.decoder == LINEAR + GAIN + DECONV + POST == 300
    assert m.model == CONV + LINEAR + GAIN + DECONV + POST == 412


def test_total_over_rate_points_counts_shared_tensors_once(tiny_dir):
    models = _models(tiny_dir)
    # Everything but `gain` is identical between the two rate points (same seed, same weights).
    assert total_over_rates(models) == 412 + GAIN


def test_identical_rate_points_total_equals_one_model(tiny_dir):
    m = _models(tiny_dir)[0]
    assert total_over_rates([m, m]) == 412
