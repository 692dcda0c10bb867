"""``python -m sgdscope`` runs the command-line interface (also under ``torchrun -m sgdscope``)."""

from .cli import main

if __name__ == "__main__":
    main()
