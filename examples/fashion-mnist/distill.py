"""Train the Fashion-MNIST teacher, distill the student from it, and write the example's data.

Real data: Debian's `dataset-fashion-mnist` (IDX files in /usr/share/datasets/fashion-mnist/).
Splits of the 60k training images (fixed seed):
  - 20k labelled images train the teacher;
  - the other 40k are used *without their labels*: the student learns the teacher's soft labels
    (KL divergence at temperature T, as in Hinton et al. 2015);
  - 512 of those 40k become the calibration set (calibration.npz).
The evaluation set is 2,000 images of the official test split (eval.npz), with labels, a
`high_risk` slice (T-shirt/top, Pullover, Coat, Shirt) and per-sample weights (2.0 on high_risk).

Outputs (beside this file): teacher.safetensors, student.safetensors, calibration.npz,
eval.npz, provenance.json (which teacher the student came from, by content hash).
Runs in about 5 minutes on 2 CPU cores:  python examples/fashion-mnist/distill.py
"""

import argparse
import gzip
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import fmnist_models  # noqa: E402

DATA_DIR = Path("/usr/share/datasets/fashion-mnist")


def read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_split(name: str) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(DATA_DIR / f"{name}-images-idx3-ubyte.gz")
    labels = read_idx(DATA_DIR / f"{name}-labels-idx1-ubyte.gz")
    return (images.astype(np.float32) / 255.0)[:, None, :, :], labels.astype(np.int64)


def batches(n: int, size: int, rng: np.random.Generator):
    order = rng.permutation(n)
    for i in range(0, n, size):
        yield order[i: i + size]


def train(model, x, targets, loss_fn, epochs: int, rng, lr=2e-3, label=""):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * (len(x) // 128 + 1))
    xt = torch.from_numpy(x)
    for epoch in range(epochs):
        model.train()
        t0, total = time.time(), 0.0
        for idx in batches(len(x), 128, rng):
            opt.zero_grad()
            loss = loss_fn(model(xt[idx]), targets[idx])
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        print(f"{label} epoch {epoch + 1}/{epochs}: loss {total / len(x):.4f} ({time.time() - t0:.0f} s)", flush=True)
    model.eval()
    return model


@torch.no_grad()
def predict(model, x: np.ndarray) -> np.ndarray:
    return np.concatenate([model(torch.from_numpy(x[i: i + 512])).numpy() for i in range(0, len(x), 512)])


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher-epochs", type=int, default=4)
    ap.add_argument("--student-epochs", type=int, default=8)
    ap.add_argument("--temperature", type=float, default=4.0)
    ap.add_argument("--out", type=Path, default=HERE)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)

    x_train, y_train = load_split("train")
    x_test, y_test = load_split("t10k")
    order = rng.permutation(len(x_train))
    teacher_idx, student_idx = order[:20_000], order[20_000:]

    teacher = train(fmnist_models.teacher(), x_train[teacher_idx], torch.from_numpy(y_train[teacher_idx]),
                    F.cross_entropy, args.teacher_epochs, rng, label="teacher")
    save_file(teacher.state_dict(), args.out / "teacher.safetensors")

    # The student never sees these labels: only the teacher's softened logits.
    x_unlabelled = x_train[student_idx]
    soft = torch.from_numpy(predict(teacher, x_unlabelled))
    T = args.temperature

    def kd_loss(student_logits, teacher_logits):
        return F.kl_div(F.log_softmax(student_logits / T, 1), F.log_softmax(teacher_logits / T, 1),
                        log_target=True, reduction="batchmean") * T * T

    student = train(fmnist_models.student(), x_unlabelled, soft, kd_loss, args.student_epochs, rng, lr=3e-3,
                    label="student")
    save_file(student.state_dict(), args.out / "student.safetensors")

    calib = rng.choice(len(x_unlabelled), 512, replace=False)
    np.savez_compressed(args.out / "calibration.npz", image=x_unlabelled[calib], labels=y_train[student_idx][calib])

    eval_idx = np.sort(rng.choice(len(x_test), 2000, replace=False))
    x_eval, y_eval = x_test[eval_idx], y_test[eval_idx]
    high_risk = np.isin(y_eval, fmnist_models.HIGH_RISK_CLASSES)
    np.savez_compressed(args.out / "eval.npz", image=x_eval, labels=y_eval,
                        slice_high_risk=high_risk, weights=np.where(high_risk, 2.0, 1.0).astype(np.float32))

    t_pred, s_pred = predict(teacher, x_eval).argmax(1), predict(student, x_eval).argmax(1)
    summary = {
        "teacher": {"file": "teacher.safetensors", "sha256": sha256(args.out / "teacher.safetensors"),
                    "parameters": fmnist_models.count_parameters(teacher),
                    "eval_accuracy": float((t_pred == y_eval).mean())},
        "student": {"file": "student.safetensors", "sha256": sha256(args.out / "student.safetensors"),
                    "parameters": fmnist_models.count_parameters(student),
                    "eval_accuracy": float((s_pred == y_eval).mean()),
                    "teacher_agreement": float((s_pred == t_pred).mean()),
                    "high_risk_accuracy": float((s_pred == y_eval)[high_risk].mean())},
        "distillation": {"teacher_train_images": len(teacher_idx), "student_unlabelled_images": len(student_idx),
                         "temperature": T, "teacher_epochs": args.teacher_epochs,
                         "student_epochs": args.student_epochs, "seed": 0,
                         "data": "Debian dataset-fashion-mnist, train split; eval: 2000 of the t10k split"},
    }
    (args.out / "provenance.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
