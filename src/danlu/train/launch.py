"""`danlu train CONFIG --nproc N`: start N processes per node through torchrun
(`python -m torch.distributed.run`), each running `danlu train CONFIG` with the same overrides.
torchrun sets RANK / LOCAL_RANK / WORLD_SIZE / MASTER_ADDR; the Trainer's Accelerator reads them.
When one process dies, torchrun stops the others and exits non-zero (no hang)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

from danlu.errors import UserError


@dataclass
class LaunchSpec:
    nproc: int = 1
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str | None = None
    master_port: int | None = None

    def validate(self) -> None:
        if self.nproc < 1 or self.nnodes < 1:
            raise UserError("--nproc and --nnodes must be at least 1", where="--nproc")
        if not 0 <= self.node_rank < self.nnodes:
            raise UserError(f"--node-rank {self.node_rank} is outside 0..{self.nnodes - 1}", where="--node-rank")
        if self.nnodes > 1 and not self.master_addr:
            raise UserError("several nodes need the address of node 0", where="--master-addr",
                            hint="pass --master-addr HOST (the node with --node-rank 0) and the same --master-port "
                                 "on every node")


def torchrun_args(spec: LaunchSpec) -> list[str]:
    """torchrun's own options for this launch."""
    args = ["--nproc_per_node", str(spec.nproc), "--nnodes", str(spec.nnodes)]
    if spec.nnodes == 1 and not spec.master_addr and spec.master_port is None:
        return args + ["--standalone"]  # a free local port, no rendezvous server to name
    args += ["--node_rank", str(spec.node_rank), "--master_addr", spec.master_addr or "127.0.0.1",
             "--master_port", str(spec.master_port or 29500)]
    return args


def command(spec: LaunchSpec, danlu_args: list[str]) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *torchrun_args(spec), "-m", "danlu", *danlu_args]


def default_nproc() -> int:
    import torch

    return max(1, torch.cuda.device_count())


def run(spec: LaunchSpec, danlu_args: list[str]) -> int:
    """Run the processes to the end; the exit status of torchrun (0, or 1 when a process failed)."""
    spec.validate()
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // spec.nproc)))
    return subprocess.run(command(spec, danlu_args), env=env).returncode
