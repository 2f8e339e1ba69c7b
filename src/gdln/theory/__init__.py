"""Theory layer: the neural race reduction, closed forms, the race, the tangent kernel. Never
imports a trainer: schedules come from :mod:`gdln.core.schedule`."""
