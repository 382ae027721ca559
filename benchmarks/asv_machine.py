"""Register this machine with asv under its class name, and print the name.

    python benchmarks/asv_machine.py

The name comes from the processor (``fastnn.bench._results.machine_class``,
e.g. ``amd-epyc-zen3-avx2-2c``), so that a Zen 3 and a Zen 4 machine keep
separate histories under ``benchmarks/results/asv/``, and every machine of
one class adds to the same one.  asv keeps its machines in
``~/.asv-machine.json``; when this is the only one there, plain ``asv run``
and ``asv continuous`` use it, otherwise pass ``--machine NAME``.
"""
import os

from fastnn.bench._results import machine_class


def main():
    from asv.machine import Machine, MachineCollection

    info = Machine.get_defaults()   # os, arch, cpu, ram as asv would ask for them
    try:
        info["num_cpu"] = str(len(os.sched_getaffinity(0)))
    except AttributeError:
        pass
    info["machine"] = machine_class()
    # Every field stored (`asv machine` stores only those that differ from its defaults).
    MachineCollection.save(info["machine"], info)
    print(info["machine"])


if __name__ == "__main__":
    main()
