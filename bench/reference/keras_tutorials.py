"""The three tutorials' own programs in tf.keras: the reference digitlab's presets are timed
against. Run only by bench/speed.py, in its own virtual environment (bench/.venv-tf); never
imported by digitlab.

    python keras_tutorials.py --net seed-mlp --mnist DIR --digits20 FILE --out result.json

Same recipe as the tutorials: Adam 1e-3, batch 32 (Keras's default), 10 epochs validated on
the test set for the MNIST networks, 40 epochs without validation for the 20x20 one.
"""

import argparse
import json
import time

T0 = time.perf_counter()
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

T_IMPORT = time.perf_counter() - T0


def read_idx(path):
    with open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def mnist(folder):
    x_train = read_idx(f"{folder}/train-images-idx3-ubyte") / 255.0
    y_train = read_idx(f"{folder}/train-labels-idx1-ubyte")
    x_test = read_idx(f"{folder}/t10k-images-idx3-ubyte") / 255.0
    y_test = read_idx(f"{folder}/t10k-labels-idx1-ubyte")
    return x_train.reshape(-1, 784), y_train, x_test.reshape(-1, 784), y_test


def digits20(path):
    with np.load(path) as npz:
        return (npz["x_train"].reshape(-1, 400) / 255.0, npz["y_train"],
                npz["x_test"].reshape(-1, 400) / 255.0, npz["y_test"])


def build(net):
    Dense = tf.keras.layers.Dense
    if net == "seed-20x20":
        model = tf.keras.Sequential([tf.keras.Input(shape=(400,)), Dense(25, activation="relu"),
                                     Dense(15, activation="relu"), Dense(10, activation="linear")])
        model.compile(loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      optimizer=tf.keras.optimizers.Adam(learning_rate=0.001),
                      metrics=["accuracy"])
        return model, 40, False
    sizes = (128, 256, 512) if net == "seed-wide" else (128, 64)
    layers = [tf.keras.Input(shape=(784,))] + [Dense(s, activation="relu") for s in sizes]
    model = tf.keras.Sequential(layers + [Dense(10, activation="softmax")])
    loss = ("categorical_crossentropy" if net == "seed-wide"
            else "sparse_categorical_crossentropy")
    model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate=0.001), loss=loss,
                  metrics=["accuracy"])
    return model, 10, True


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--net", required=True, choices=["seed-mlp", "seed-wide", "seed-20x20"])
    parser.add_argument("--mnist")
    parser.add_argument("--digits20")
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    tf.keras.utils.set_random_seed(args.seed)
    t = time.perf_counter()
    x, y, xt, yt = digits20(args.digits20) if args.net == "seed-20x20" else mnist(args.mnist)
    t_data = time.perf_counter() - t
    model, epochs, validate = build(args.net)
    one_hot = args.net == "seed-wide"  # the second tutorial's to_categorical labels
    ytrain = tf.keras.utils.to_categorical(y, 10) if one_hot else y
    ytest = tf.keras.utils.to_categorical(yt, 10) if one_hot else yt
    t = time.perf_counter()
    history = model.fit(x, ytrain, epochs=epochs, batch_size=32, verbose=2,
                        validation_data=(xt, ytest) if validate else None)
    t_train = time.perf_counter() - t
    t = time.perf_counter()
    pred = model.predict(xt, verbose=0).argmax(1)
    accuracy = float((pred == yt).mean())
    t_eval = time.perf_counter() - t
    t = time.perf_counter()
    model.save(args.out.replace(".json", ".keras"))
    t_save = time.perf_counter() - t
    result = {"net": args.net, "epochs": epochs, "import_seconds": T_IMPORT,
              "data_seconds": t_data, "train_seconds": t_train,
              "seconds_per_epoch": t_train / epochs, "eval_seconds": t_eval,
              "save_seconds": t_save, "test_accuracy": accuracy,
              "train_accuracy": float(history.history["accuracy"][-1]),
              "tensorflow": tf.__version__}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
