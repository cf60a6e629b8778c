"""The queue's periodic jobs, one module each, as River keeps its maintenance services and
Oban its plugins. Each is an object with ``run_once`` (or its one step), which the tests call
directly and its process calls on its schedule.
"""
