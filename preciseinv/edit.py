"""``python -m preciseinv.edit``: prompt editing through inverted latents (paper Sec. 3.4).

    python -m preciseinv.edit model=sd15 image=cat.png source="a cat" target="a dog"
    python -m preciseinv.edit model=sd15 pairs=edits.jsonl trainer.devices=4      # rows: image, source, target

Each image is inverted with its source prompt, then regenerated from x*_T with the target prompt under
classifier-free guidance (``edit_guidance_scale``) whose negative prompt is the source prompt. The same Lightning
machinery as ``fit`` runs it (multi-GPU, resumable into the same ``output_dir``); outputs add ``edit/<id>.png`` and
``grid/<id>.png`` (input | reconstruction | edit) to fit's.
"""

from preciseinv.fit import main

if __name__ == "__main__":
    main("edit")
