"""Addresses, header-safe text and text wrapping for the alert emails."""

import pytest

from plugins.alerts.compose import InvalidAddress, check_address, one_line, parse_mailbox, tidy_text


@pytest.mark.parametrize(
    "value",
    ["ms.rivera@district.org", "o'brien+apps@k12.district.org", "zoë.müller@students.district.org", "a@[192.0.2.1]"],
)
def test_real_addresses_pass(value):
    assert check_address(value).addr_spec.replace('"', "") == value


@pytest.mark.parametrize(
    "value",
    [
        "", "not an address", "ms.rivera at district.org", "a@b@c.org", "a@", "@district.org", "a@district",
        "x@y.org\r\nBcc: victim@evil.example", "x@y.org\nBcc: v@e.org", "<a@b.org>", "a@b.org, c@d.org",
        " a@b.org", "a@b.org ", "a\x00@b.org", None,
    ],
)
def test_anything_else_is_refused(value):
    with pytest.raises(InvalidAddress):
        check_address(value)


def test_configured_mailboxes_keep_their_display_name_and_refuse_lists_and_injection():
    sender = parse_mailbox("IT Privacy <privacy@district.org>")
    assert (sender.display_name, sender.addr_spec) == ("IT Privacy", "privacy@district.org")
    assert parse_mailbox("privacy@district.org").display_name == ""
    for bad in ("IT <a@b.org>, c@d.org", "garbage <", "Foo <bar>", "IT Privacy <privacy@district.org>\r\nBcc: v@e.org"):
        with pytest.raises(InvalidAddress):
            parse_mailbox(bad)


def test_one_line_removes_line_breaks_and_terminal_controls():
    assert one_line("Evil\r\nBcc: x@y.org\u2028\x1b[31mred\x1b[0m\u202etxt.exe") == "Evil Bcc: x@y.org [31mred [0mtxt.exe"
    assert one_line(None) == ""
    assert one_line("x" * 300, 10) == "xxxxxxxxx…"


def test_tidy_text_wraps_with_hanging_indents_and_never_breaks_urls():
    text = (
        "A paragraph that is much longer than seventy-two characters and so has to be wrapped somewhere.\n"
        "\n\n\n"
        "   - An indented list item that is also far too long to fit on a single line of the message.\n"
        "- Ask for a review: https://district.org/a/very/long/request/form/url/that/is/longer/than/the/line/width\n"
    )
    assert tidy_text(text) == (
        "A paragraph that is much longer than seventy-two characters and so has\n"
        "to be wrapped somewhere.\n"
        "\n"
        "   - An indented list item that is also far too long to fit on a single\n"
        "     line of the message.\n"
        "- Ask for a review:\n"
        "  https://district.org/a/very/long/request/form/url/that/is/longer/than/the/line/width\n"
    )
