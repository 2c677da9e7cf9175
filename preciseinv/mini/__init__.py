"""The embedded mini model: a small pixel-space DDPM this project trains itself (see ``train.py``)."""
