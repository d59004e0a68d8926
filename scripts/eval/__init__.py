"""The scored evaluation: labelled synthetic traffic pushed end to end through the product
(`python -m scripts.eval`, EVALUATION.md). `traffic` generates, `drive` runs the stages,
`score` scores."""
