"""Small text helpers shared by the tools' messages."""


def plural(n, one, many=None):
    """'1 flow', '2 flows', '1 summary', '3 summaries': a count with its noun agreeing.
    many: the plural when it is not one + 's' (entry -> entries)."""
    if n == 1:
        return f"{n} {one}"
    return f"{n} {many or one + 's'}"
