"""One module per stage of `humo data run`, named as the stage (`humo.data.pipeline.core.STAGES` lists them)."""
