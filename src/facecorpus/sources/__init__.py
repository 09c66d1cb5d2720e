"""Sources: each turns a recipe's source section into WorkItems carrying the input bytes.

A source is a PTransform applied to the pipeline root that returns {'main': PCollection[WorkItem],
'rejects': PCollection[Reject]} and counts every input it sees once (`count_inputs`). Sources know
nothing of faces, prompts or sinks.
"""
