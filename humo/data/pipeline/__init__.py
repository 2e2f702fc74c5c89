"""`humo data`: real talking videos -> a training manifest, in stages over clips (docs/data-pipeline.md).

A run folder OUT holds everything a run makes:

    OUT/run.json                 the inputs and settings of the last run (a rerun without --input resumes them)
    OUT/stages/<stage>.jsonl     one line per input clip of that stage: its output records (kept or dropped)
    OUT/<stage>/...              files a stage writes (normalise: 25 fps MP4 + 16 kHz WAV; segments: the same)
    OUT/captions/<id>.txt        each kept segment's caption, editable (an edit wins on the next run)
    OUT/manifest.jsonl           the kept segments in the manifest format (docs/data-format.md)

Each stage is one module of `humo.data.pipeline.stages`, found by its name, with a per-clip function
``process(record, settings) -> record | [records]`` (see `core`). The runner maps it over the clips the stage has
not done yet, appends each result to the stage's journal as it completes, and hands the kept records to the next
stage; ``--executor ray`` maps the same function with Ray Data (`ray_executor`; `core.apply_stage` is picklable and
pure), writing the same journals.
"""

from humo.data.pipeline.core import STAGES, Settings, run_pipeline, run_status

__all__ = ["STAGES", "Settings", "run_pipeline", "run_status"]
