"""The release's cases file (`test_case.json`): {name: {"prompt", "img_paths": [...], "audio_path", ...}}, with our
optional "pose_path" and "persons" ([{"ref_image", "audio"[, "box" | "mask"]}, ...]). One rule for the shape of a
case's fields, read by `humo generate --cases` and `humo eval --cases` alike, so that a file one accepts the
other does not refuse (or crash on)."""

from __future__ import annotations

from humo.errors import HumoError

PERSON_KEYS = ("ref_image", "audio", "box", "mask")


def check_case(name: str, case, who: str) -> None:
    """A one-line HumoError, prefixed `who` (the file), for the first field of case `name` of the wrong shape:
    `img_paths` a list of files; `audio_path`, `pose_path` one file each (a person's own track goes in "persons",
    never a list of tracks); "persons" a non-empty list of objects, each with one reference image and one audio
    file, a box (text or four numbers) or a mask file, and nothing else."""
    where = f"{who}: case '{name}'"
    if not isinstance(case, dict):
        raise HumoError(f"{where}: expected an object {{prompt, img_paths, audio_path}}")
    images = case.get("img_paths")
    if images is not None and (not isinstance(images, list) or not all(isinstance(p, str) for p in images)):
        raise HumoError(f"{where}: 'img_paths' must be a list of image files")
    for key in ("audio_path", "pose_path"):
        if case.get(key) and not isinstance(case[key], str):
            extra = "; several people with their own tracks go in 'persons'" if key == "audio_path" else ""
            raise HumoError(f"{where}: '{key}' must be one file, not {type(case[key]).__name__}{extra}")
    persons = case.get("persons")
    if persons is None:
        return
    if not isinstance(persons, list) or not persons:
        raise HumoError(f"{where}: 'persons' must be a non-empty list of {{ref_image, audio[, box | mask]}}")
    for k, p in enumerate(persons):
        if not isinstance(p, dict) or not p.get("ref_image") or not p.get("audio"):
            raise HumoError(f"{where}: person {k + 1} needs a 'ref_image' and an 'audio'")
        unknown = sorted(set(p) - set(PERSON_KEYS))
        if unknown:
            raise HumoError(f"{where}: person {k + 1}: unknown key '{unknown[0]}' ({', '.join(PERSON_KEYS)})")
        for key in ("ref_image", "audio", "mask"):
            if p.get(key) and not isinstance(p[key], str):
                raise HumoError(f"{where}: person {k + 1}: '{key}' must be one file, not {type(p[key]).__name__}")
