"""Answer many range-sum queries over one list. Correct, but slow for long lists and many queries."""


def range_sums(values: list[int], queries: list[tuple[int, int]]) -> list[int]:
    """For each (i, j) in queries, the sum of values[i:j]."""
    answers = []
    for i, j in queries:
        total = 0
        for k in range(i, j):
            total += values[k]
        answers.append(total)
    return answers
