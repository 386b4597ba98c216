"""Image training loop: throughput of ``retrain.training.loop.fit`` against a plain loop, and what the two
CNNs reach at demo size.

How it is measured
------------------
1. Data (timed, for context): ``retrain.data.mnist.generate_mnist(6000, 1000)`` and
   ``retrain.data.cifar10.generate_cifar10(2000, 5 batches, 2000 test)``, parsed back with the readers and
   turned into uint8 ``TensorDataset``s with ``retrain.training.loop.image_dataset``.
2. Throughput, MNIST: the same ``MnistCNN`` (same initial weights), same 6000 training / 1000 test images,
   batch size 64, AdamW at lr 1e-3, the same torch thread count, ``EPOCHS_MNIST`` epochs each, trained
   ``REPEATS`` times by each loop in alternation (A B A B ...), so load from other processes hits both.
   - ``fit``: ``retrain.training.loop.fit`` as the DAG uses it, with a checkpoint folder (a checkpoint is
     written after every epoch) and a validation pass per epoch.
   - plain: the loop of pytorch/examples ``mnist/main.py``: a ``DataLoader(batch_size=64, shuffle=True)``
     over the images as float tensors in [0, 1] (converted once, untimed, so it pays no per-sample PIL
     conversion as torchvision's MNIST would), ``zero_grad / forward / loss / backward / step``, a
     ``loss.item()`` every 10 batches as the example logs, and a test pass (``test_batch_size=1000``) per
     epoch. On CUDA it uses the example's ``num_workers=1, pin_memory=True``; no AMP anywhere on CPU.
   Training samples/s counts the training passes only (the sum over epochs of images / training seconds);
   end to end is all epochs' images / the wall time of the whole call, validation and checkpoints
   included. The median over repeats is printed for each and the ratio fit / plain (target >= 1.0).
3. Demo size: time per epoch and test accuracy. MNIST: the ``fit`` runs of step 2 (``EPOCHS_MNIST`` epochs on
   6000 images), accuracy with ``loop.evaluate`` on the 1000 test images (target >= 97 %). CIFAR-10:
   ``Cifar10CNN``, ``EPOCHS_CIFAR`` epochs on 10000 images, batch 64, AdamW lr 2e-3, crop+flip
   augmentation, accuracy on the 2000 test images against the 10 % of chance.

The 1-minute load average is printed before and after: on a small machine another process (a test suite)
slows every number here. Run from the repo root: ``.venv/bin/python bench/bench_image_loop.py``
(about 2 minutes on 2 CPU cores; ``--device cuda`` to run on a GPU).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from retrain.data import cifar10, mnist
from retrain.models.cifar10_cnn import Cifar10CNN
from retrain.models.mnist_cnn import MnistCNN
from retrain.training import loop

MNIST_TRAIN, MNIST_TEST = 6000, 1000
CIFAR_PER_BATCH, CIFAR_BATCHES, CIFAR_TEST = 2000, 5, 2000
EPOCHS_MNIST, EPOCHS_CIFAR = 3, 5
REPEATS = 3
BATCH = 64


def plain_loop(model, train_x, train_y, test_x, test_y, epochs: int, device: torch.device, lr: float) -> dict:
    """pytorch/examples mnist/main.py, with the model, optimizer and data of the comparison."""
    kwargs = {"num_workers": 1, "pin_memory": True} if device.type == "cuda" else {}
    train_loader = DataLoader(TensorDataset(train_x, train_y), batch_size=BATCH, shuffle=True, **kwargs)
    test_loader = DataLoader(TensorDataset(test_x, test_y), batch_size=1000, **kwargs)
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    train_seconds = 0.0
    started = time.perf_counter()
    for _ in range(epochs):
        t0 = time.perf_counter()
        model.train()
        for batch_idx, (data, target) in enumerate(train_loader):
            data, target = data.to(device), target.to(device)
            optimizer.zero_grad()
            output = model(data)
            loss = F.cross_entropy(output, target)
            loss.backward()
            optimizer.step()
            if batch_idx % 10 == 0:
                loss.item()  # the example prints it
        if device.type == "cuda":
            torch.cuda.synchronize()
        train_seconds += time.perf_counter() - t0
        model.eval()
        test_loss, correct = 0.0, 0
        with torch.no_grad():
            for data, target in test_loader:
                data, target = data.to(device), target.to(device)
                output = model(data)
                test_loss += F.cross_entropy(output, target, reduction="sum").item()
                correct += output.argmax(dim=1).eq(target).sum().item()
    wall = time.perf_counter() - started
    n = len(train_y) * epochs
    return {"train_sps": n / train_seconds, "e2e_sps": n / wall, "wall": wall, "accuracy": correct / len(test_y)}


def run_fit(model, train, test, cfg: loop.LoopConfig) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-image-") as folder:
        started = time.perf_counter()
        history = loop.fit(model, train, test, cfg, checkpoint_dir=folder)
        wall = time.perf_counter() - started
    n = len(train) * len(history)
    train_seconds = sum(len(train) / h["samples_per_s"] for h in history)
    return {
        "train_sps": n / train_seconds,
        "e2e_sps": n / wall,
        "wall": wall,
        "epoch_s": statistics.median(h["seconds"] for h in history),
        "history": history,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--repeats", type=int, default=REPEATS)
    args = parser.parse_args()

    device = loop.pick_device(args.device)
    threads = torch.get_num_threads()
    print(f"image loop benchmark (python {sys.version.split()[0]}, torch {torch.__version__}, device {device}, "
          f"{loop.available_cores()} cores available, {threads} torch threads)")
    load = os.getloadavg()[0]
    print(f"  load average before: {load:.2f}")
    if device.type == "cpu" and load > 0.5 * loop.available_cores():
        print("  WARNING: other processes are using the CPU; with torch's threads competing for cores the numbers "
              "below can be several times lower and the fit/plain ratio is noise")

    started = time.perf_counter()
    splits = mnist.read_files(mnist.generate_mnist(MNIST_TRAIN, MNIST_TEST, seed=0))
    mnist_s = time.perf_counter() - started
    started = time.perf_counter()
    _, csplits = cifar10.read_files(cifar10.generate_cifar10(CIFAR_PER_BATCH, CIFAR_BATCHES, CIFAR_TEST, seed=0))
    cifar_s = time.perf_counter() - started
    print(f"  generate + read: MNIST {MNIST_TRAIN}+{MNIST_TEST} in {mnist_s:.1f} s, "
          f"CIFAR-10 {CIFAR_PER_BATCH * CIFAR_BATCHES}+{CIFAR_TEST} in {cifar_s:.1f} s")

    train, test = loop.image_dataset(*splits["train"]), loop.image_dataset(*splits["test"])
    as_float = lambda ds: (ds.tensors[0].float().div(255.0), ds.tensors[1])  # noqa: E731
    (train_x, train_y), (test_x, test_y) = as_float(train), as_float(test)
    cfg = loop.LoopConfig(epochs=EPOCHS_MNIST, batch_size=BATCH, lr=1e-3, seed=0, device=args.device)

    fits, plains, accuracies = [], [], []
    for _ in range(args.repeats):
        torch.manual_seed(0)
        model = MnistCNN()
        plains.append(plain_loop(model, train_x, train_y, test_x, test_y, EPOCHS_MNIST, device, lr=1e-3))
        torch.manual_seed(0)
        model = MnistCNN()
        fits.append(run_fit(model, train, test, cfg))
        accuracies.append(loop.evaluate(model, test).accuracy)

    def med(runs, key):
        return statistics.median(r[key] for r in runs)

    print(f"\nMNIST throughput: MnistCNN, {MNIST_TRAIN} images x {EPOCHS_MNIST} epochs, batch {BATCH}, "
          f"median of {args.repeats} alternating runs")
    print(f"  {'':28s}{'train samples/s':>16s}{'end-to-end samples/s':>22s}{'wall s':>9s}")
    for name, runs in (("retrain.training.loop.fit", fits), ("plain (pytorch/examples)", plains)):
        print(f"  {name:28s}{med(runs, 'train_sps'):16.0f}{med(runs, 'e2e_sps'):22.0f}{med(runs, 'wall'):9.2f}")
    ratio = med(fits, "train_sps") / med(plains, "train_sps")
    print(f"  ratio fit / plain, training samples/s: {ratio:.2f}x   (target >= 1.0: {'met' if ratio >= 1.0 else 'NOT met'})")
    print(f"  ratio fit / plain, end to end:         {med(fits, 'e2e_sps') / med(plains, 'e2e_sps'):.2f}x")

    mnist_acc = statistics.median(accuracies)
    print(f"\nDemo size (device {device})")
    print(f"  MnistCNN    {sum(p.numel() for p in MnistCNN().parameters()):>8,} params: "
          f"{med(fits, 'epoch_s'):5.1f} s/epoch, test accuracy after {EPOCHS_MNIST} epochs on {MNIST_TRAIN}: "
          f"{mnist_acc:.2%} (target >= 97%: {'met' if mnist_acc >= 0.97 else 'NOT met'}; plain loop: "
          f"{statistics.median(p['accuracy'] for p in plains):.2%})")

    ctrain, ctest = loop.image_dataset(*csplits["train"]), loop.image_dataset(*csplits["test"])
    torch.manual_seed(0)
    cmodel = Cifar10CNN()
    ccfg = loop.LoopConfig(epochs=EPOCHS_CIFAR, batch_size=BATCH, lr=2e-3, seed=0, augment=True, device=args.device)
    cfit = run_fit(cmodel, ctrain, ctest, ccfg)
    result = loop.evaluate(cmodel, ctest)
    print(f"  Cifar10CNN  {sum(p.numel() for p in Cifar10CNN().parameters()):>8,} params: "
          f"{cfit['epoch_s']:5.1f} s/epoch ({cfit['train_sps']:.0f} training samples/s), test accuracy after "
          f"{EPOCHS_CIFAR} epochs on {len(ctrain)}: {result.accuracy:.2%} vs 10% chance (macro-F1 {result.macro_f1:.3f})")
    per_class = ", ".join(f"{n} {a:.0%}" for n, a in zip(cifar10.CLASSES, result.per_class_accuracy))
    print(f"    per class: {per_class}")
    by_epoch = ", ".join(f"{h['val_accuracy']:.1%}" for h in cfit["history"])
    print(f"    val accuracy by epoch: {by_epoch}")
    print(f"\n  load average after: {os.getloadavg()[0]:.2f}")
    return 0 if ratio >= 1.0 and mnist_acc >= 0.97 else 1


if __name__ == "__main__":
    np.set_printoptions(linewidth=160)
    sys.exit(main())
