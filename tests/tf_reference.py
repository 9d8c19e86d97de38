"""TensorFlow side of tests/test_tf_exact.py; runs in .venv-tf (TensorFlow is test-only).

    .venv-tf/bin/python tests/tf_reference.py WORKDIR

Builds the release's three generators in TF 1.x graph ops (written from the op conventions in
docs/release_models.md), gives them random weights, saves each with `tf.compat.v1.train.Saver`
to `WORKDIR/<model>/deblur.model-523000.*` (the release's format), and runs every input of
`WORKDIR/inputs.npz` (`<model>/<case>`, NHWC) through it, saving every scale's output to
`WORKDIR/outputs.npz` (`<model>/<case>/<level>`, coarsest first, NHWC). Inputs whose size is not
a multiple of 16 are edge-padded to one and the outputs cropped back, as the release's test
procedure does. It also writes the odd checkpoints the converter must refuse or skip.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf1 = tf.compat.v1
MODELS = {"color": (3, False), "gray": (1, False), "lstm": (1, True)}
SCALES = 3


def resize(x, size):
    return tf1.image.resize_bilinear(x, size, align_corners=False, half_pixel_centers=False)


def conv(x, scope, out, k=5, stride=1, relu=True):
    with tf1.variable_scope(scope):
        w = tf1.get_variable("weights", [k, k, int(x.shape[-1]), out])
        b = tf1.get_variable("biases", [out])
    y = tf.nn.bias_add(tf.nn.conv2d(x, w, strides=[1, stride, stride, 1], padding="SAME"), b)
    return tf.nn.relu(y) if relu else y


def deconv(x, scope, out):
    """4x4 transposed conv, stride 2, 'SAME'; weights [kh, kw, out, in]."""
    n, h, w, c = (int(d) for d in x.shape)
    with tf1.variable_scope(scope):
        kernel = tf1.get_variable("weights", [4, 4, out, c])
        b = tf1.get_variable("biases", [out])
    y = tf.nn.conv2d_transpose(x, kernel, [n, 2 * h, 2 * w, out], strides=[1, 2, 2, 1], padding="SAME")
    return tf.nn.relu(tf.nn.bias_add(y, b))


def res_block(x, scope):
    with tf1.variable_scope(scope):
        return x + conv(conv(x, "conv1", int(x.shape[-1])), "conv2", int(x.shape[-1]), relu=False)


def conv_lstm(x, state):
    """One 3x3 conv over [x, h] -> gates i, j, f, o; the state is one tensor [c, h]."""
    c, h = tf.split(state, 2, axis=3)
    with tf1.variable_scope("convLSTM"):
        gates = conv(tf.concat([x, h], axis=3), "LSTM_conv", 4 * int(h.shape[-1]), k=3, relu=False)
    i, j, f, o = tf.split(gates, 4, axis=3)
    new_c = c * tf.sigmoid(f + 1.0) + tf.sigmoid(i) * tf.tanh(j)
    new_h = tf.tanh(new_c) * tf.sigmoid(o)
    return new_h, tf.concat([new_c, new_h], axis=3)


def generator(inputs, channels, lstm):
    """The release's `generator`: returns every scale's estimate, coarsest first."""
    n, h, w, _ = (int(d) for d in inputs.shape)
    outputs, pred = [], inputs
    state = tf.zeros([n, h // 4, w // 4, 256]) if lstm else None
    with tf1.variable_scope("g_net", reuse=tf1.AUTO_REUSE):
        for i in range(SCALES):
            scale = 0.5 ** (SCALES - i - 1)
            hi, wi = int(round(h * scale)), int(round(w * scale))
            x = tf.concat([resize(inputs, [hi, wi]), tf.stop_gradient(resize(pred, [hi, wi]))], axis=3)
            e1 = conv(x, "enc1_1", 32)
            for k in (2, 3, 4):
                e1 = res_block(e1, f"enc1_{k}")
            e2 = conv(e1, "enc2_1", 64, stride=2)
            for k in (2, 3, 4):
                e2 = res_block(e2, f"enc2_{k}")
            e3 = conv(e2, "enc3_1", 128, stride=2)
            for k in (2, 3, 4):
                e3 = res_block(e3, f"enc3_{k}")
            if lstm:
                state = resize(state, [hi // 4, wi // 4])
                e3, state = conv_lstm(e3, state)
            for k in (3, 2, 1):
                e3 = res_block(e3, f"dec3_{k}")
            d2 = deconv(e3, "dec2_4", 64) + e2
            for k in (3, 2, 1):
                d2 = res_block(d2, f"dec2_{k}")
            d1 = deconv(d2, "dec1_4", 32) + e1
            for k in (3, 2, 1):
                d1 = res_block(d1, f"dec1_{k}")
            pred = conv(d1, "dec1_0", channels, relu=False)
            outputs.append(pred)
    return outputs


def randomise(sess, variables, rng):
    """Xavier-uniform weights and non-zero biases, so a swapped or unpermuted tensor shows."""
    for var in variables:
        shape = var.shape.as_list()
        if len(shape) == 4:
            fan_in, fan_out = shape[0] * shape[1] * shape[2], shape[0] * shape[1] * shape[3]
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            value = rng.uniform(-limit, limit, shape)
        else:
            value = rng.uniform(-0.1, 0.1, shape)
        var.load(value.astype(np.float32), sess)


def padded(length):
    return -(-length // 16) * 16


def run_model(workdir, model, inputs, seed):
    channels, lstm = MODELS[model]
    results = {}
    with tf.Graph().as_default(), tf1.Session() as sess:
        placeholders, graphs = {}, {}
        for case, image in inputs.items():
            n, h, w, c = image.shape
            placeholders[case] = tf1.placeholder(tf.float32, [n, padded(h), padded(w), c])
            graphs[case] = generator(placeholders[case], channels, lstm)
        variables = tf1.global_variables()
        sess.run(tf1.variables_initializer(variables))
        randomise(sess, variables, np.random.default_rng(seed))
        tf1.train.Saver(variables).save(sess, str(workdir / model / "deblur.model"), global_step=523000,
                                        write_meta_graph=False)
        for case, image in inputs.items():
            n, h, w, c = image.shape
            feed = np.pad(image, ((0, 0), (0, padded(h) - h), (0, padded(w) - w), (0, 0)), mode="edge")
            outs = sess.run(graphs[case], {placeholders[case]: feed})
            for level, out in enumerate(outs):
                f = 0.5 ** (SCALES - level - 1)
                results[f"{model}/{case}/{level}"] = out[:, : int(round(h * f)), : int(round(w * f))]
    return results


def save_variables(prefix, values):
    """Plain variables named as given, saved as the release saves its weights."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    with tf.Graph().as_default(), tf1.Session() as sess:
        variables = [tf1.Variable(v, name=k) for k, v in values.items()]
        sess.run(tf1.variables_initializer(variables))
        tf1.train.Saver(variables).save(sess, str(prefix), write_meta_graph=False)


def write_odd_checkpoints(workdir, gray_values):
    """Checkpoints the converter must reject (foreign/missing variables, float64) or skip (Adam)."""
    foreign = dict(gray_values)
    del foreign["g_net/dec1_0/biases"]
    foreign["g_net/extra_conv/weights"] = np.zeros((3, 3, 4, 4), np.float32)
    save_variables(workdir / "odd" / "foreign" / "model", foreign)
    double = dict(gray_values)
    double["g_net/enc1_1/biases"] = double["g_net/enc1_1/biases"].astype(np.float64)
    save_variables(workdir / "odd" / "float64" / "model", double)
    # A training checkpoint: the weights plus Adam's slots, beta powers and the global step.
    (workdir / "odd" / "adam").mkdir(parents=True, exist_ok=True)
    with tf.Graph().as_default(), tf1.Session() as sess:
        image = tf1.placeholder(tf.float32, [1, 16, 16, 1])
        loss = tf.reduce_mean(generator(image, 1, False)[-1] ** 2)
        step = tf1.train.get_or_create_global_step()
        train_op = tf1.train.AdamOptimizer(1e-4).minimize(loss, global_step=step)
        sess.run(tf1.global_variables_initializer())
        for var in tf1.trainable_variables():
            var.load(gray_values[var.op.name], sess)
        del train_op  # slots exist once built; no step is run, so the weights stay as given
        tf1.train.Saver().save(sess, str(workdir / "odd" / "adam" / "model"), write_meta_graph=False)


def read_values(prefix):
    reader = tf1.train.NewCheckpointReader(str(prefix))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def main(workdir: Path) -> None:
    tf1.disable_eager_execution()
    data = np.load(workdir / "inputs.npz")
    outputs = {}
    for seed, model in enumerate(MODELS):
        cases = {key.split("/")[1]: data[key] for key in data.files if key.startswith(f"{model}/")}
        outputs.update(run_model(workdir, model, cases, seed))
    write_odd_checkpoints(workdir, read_values(workdir / "gray" / "deblur.model-523000"))
    np.savez(workdir / "outputs.npz", **outputs)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
