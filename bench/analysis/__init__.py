"""Every derived number, one estimator per quantity: pure functions of a results DataFrame (and the variants'
declared specs). Sweeps produce rows, analysis turns them into tables, plots and the report draw the tables.

Modules: ``fit`` (the estimators), ``select`` (which rows), one module per question (``efficiency``, ``limits``,
``accuracy``, ``pareto``, ``approximation``, ``learning``, ``distillation``, ``repeatability``, ``peers``),
and ``gate`` (the regression gate's exponents); each ``summary`` is a sweep's end-of-run table. Nothing here
imports a sweep or measures.
"""
