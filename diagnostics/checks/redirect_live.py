"""How ``redirect.*`` judge a live round trip, watched in the company's own mailbox.

Pure: the live round trip (:mod:`diagnostics.liveroundtrip`) sees the company side only: the
delivery to the company's server, the kept copy in the mailbox (and the folder it was filed
in), and a bounce that names the tag. The platform's inbox cannot be read from here, so with
no bounce the finding says the company server passed the message on and what to look for in
the platform. What a bounce means is read by the diagnosis rules, as in the sandbox
(:func:`diagnostics.checks.redirect.classify_roundtrip`).
"""

from __future__ import annotations

from diagnostics.findings import Cause, Outcome, Status
from diagnostics.profiles import PlatformProfile
from diagnostics.roundtrip import LiveWatch, RoundTrip

# Folder names (any language) that mean a spam filter filed the copy.
_JUNK = ("junk", "spam", "bulk", "quarantine", "unerwünscht", "indésirable")


def _mailbox_cause(watch: LiveWatch) -> Cause | None:
    step, error = watch.mailbox_step or "", (watch.mailbox_error or "").lower()
    if "timed out" in error or "no answer" in error:
        return Cause.CONNECTION_TIMEOUT
    if step in ("login", "token"):
        return Cause.AUTH_FAILED
    if step == "resolve":
        return Cause.DNS_FAILURE
    if step == "tls":
        return Cause.TLS_CERTIFICATE if "not trusted" in error else Cause.TLS_MISMATCH
    if step == "starttls":
        return Cause.TLS_MISMATCH
    if step == "config":
        return None
    return Cause.CONNECTION_REFUSED


def mailbox_unreadable(trip: RoundTrip, where: str) -> Outcome:
    """The finding when the mailbox could not be opened or read: ``where`` names the account
    file's key (``company.mailbox``)."""
    watch = trip.live
    assert watch is not None and watch.mailbox_error is not None
    if watch.mailbox_step == "config":
        return Outcome(
            Status.SKIP,
            "No mailbox to watch",
            f"{watch.mailbox_error}.",
            remediation=(
                f"Give {where} in the account file (host, port, encryption, account, and "
                "password: ${ENV_VAR}, password_file or token_command)."
            ),
        )
    cause = _mailbox_cause(watch)
    said = f"{watch.mailbox_step}: {watch.mailbox_error}".rstrip(".")
    sent = "Nothing was sent." if not trip.token else "The test message was sent."
    if watch.mailbox_step == "token":
        fix = (
            f"Run {where}.token_command by hand: it must print a valid OAuth2 access token on "
            "its first line (refresh its grant when it says the refresh token expired)."
        )
    elif cause is Cause.AUTH_FAILED and watch.credential == "token":
        fix = (
            f"The server refused the OAuth2 token that {where}.token_command printed. Check "
            f"that it is for {where}.account, that its scope allows IMAP (Microsoft 365: "
            "https://outlook.office.com/IMAP.AccessAsUser.All; Google: https://mail.google.com/), "
            "and that IMAP is enabled for the mailbox (Microsoft 365: Set-CASMailbox "
            "-ImapEnabled $true)."
        )
    elif cause is Cause.AUTH_FAILED:
        fix = (
            f"Check {where}.account and its password in the account file; the server refused "
            "the login. Microsoft 365 and Google Workspace refuse passwords over IMAP (basic "
            f"authentication is off): give {where}.token_command, a command that prints an "
            "OAuth2 access token (as msmtp, mutt and isync take one), and maildiag logs in "
            "with XOAUTH2."
        )
    elif cause is Cause.TLS_CERTIFICATE:
        fix = (
            "Give the IMAP server a certificate from a public CA for its host name, or pass "
            "the CA that signed it with --ca-file."
        )
    elif cause is Cause.TLS_MISMATCH:
        fix = (
            f"Set {where}.encryption to what the port speaks: tls on 993 (IMAPS), starttls on 143."
        )
    else:
        fix = (
            f"Check {where}.host and .port (IMAPS is 993), and that this machine may reach "
            "the IMAP server (VPN, firewall); with the round trip's mailbox unreadable, send "
            "a test message by hand and look for it."
        )
    return Outcome(
        Status.ERROR,
        f"Cannot read the mailbox {watch.mailbox}",
        f"{said}. {sent}",
        cause,
        fix,
    )


def _subject(trip: RoundTrip) -> str:
    return f"Bewerbung: maildiag round trip {trip.token}"


def classify_platform_target(watch: LiveWatch, profile: PlatformProfile, inbound: str) -> Outcome:
    """``--probe-platform``: whether the platform's inbound MX knows the inbound address."""
    ui = profile.ui
    if watch.platform_refused:
        return Outcome(
            Status.FAIL,
            f"The platform does not know {inbound}",
            f"The platform's inbound MX {watch.platform_mx or ''} refused RCPT TO:<{inbound}>: "
            f"{watch.platform_reply}. Mail redirected there bounces; no test message was sent.",
            Cause.RECIPIENT_UNKNOWN,
            f"In {ui.settings_path}, copy the {ui.inbound_address_label} exactly; set "
            "platform.account in the account file to the part before '-jobs@', and redirect "
            "the custom address to that address on the company server.",
        )
    if watch.platform_code is None:
        return Outcome(
            Status.ERROR,
            "Could not ask the platform's inbound MX",
            f"{watch.platform_error}.",
            Cause.CONNECTION_REFUSED,
            "This machine may not reach port 25 of the platform's MX (many networks block "
            "outgoing port 25); run the audit from a server that may, or leave out "
            "--probe-platform.",
        )
    if watch.platform_code >= 400:
        return Outcome(
            Status.WARN,
            f"The platform's inbound MX deferred RCPT TO:<{inbound}>",
            f"{watch.platform_mx} answered {watch.platform_reply} (a temporary answer: "
            "greylisting or a rate limit); whether the address exists is not known yet.",
            Cause.TEMPORARY_FAILURE,
            "Run the audit again in a few minutes.",
        )
    return Outcome(
        Status.PASS,
        f"The platform accepts {inbound}",
        f"The platform's inbound MX {watch.platform_mx} answered RCPT TO:<{inbound}> with "
        f"{watch.platform_reply}; no message was sent. --roundtrip tests the redirection "
        "itself.",
    )


def classify_live_roundtrip(
    trip: RoundTrip, profile: PlatformProfile, inbound: str
) -> Outcome | None:
    """The live verdict when no bounce came back; None when the sandbox's rules apply (the
    delivery failed, or a bounce came back)."""
    watch = trip.live
    assert watch is not None
    if watch.platform_refused or not watch.sent:
        return classify_platform_target(watch, profile, inbound)
    if trip.delivery_error is not None or trip.bounces:
        return None
    ui = profile.ui
    copy = (
        f" A copy is in {trip.local_copies[0].folder} of {watch.mailbox}."
        if trip.local_copies
        else ""
    )
    return Outcome(
        Status.PASS,
        f"No bounce in {trip.waited_s:.0f} s: {trip.delivered_to} passed the test message on",
        f"The test message to {trip.address} went via {watch.via} to {trip.delivered_to}, and no "
        f"bounce came back to {watch.mailbox} within {trip.waited_s:.0f} s.{copy} The "
        f"platform's inbox cannot be read from here: in {ui.settings_path}, open "
        f"'{ui.unassigned}' and look for the subject '{_subject(trip)}' ({inbound} must have "
        "received it).",
    )


def not_sent(trip: RoundTrip) -> Outcome | None:
    """The finding of the checks that need the test message, when none was sent."""
    watch = trip.live
    if watch is None or watch.sent:
        return None
    why = (
        "the platform does not know its inbound address (see redirect.roundtrip)"
        if watch.platform_refused
        else "only --probe-platform was asked for; --roundtrip sends it"
    )
    return Outcome(Status.SKIP, "No test message sent", f"No test message was sent: {why}.")


def classify_live_local_copy(trip: RoundTrip) -> Outcome | None:
    """The kept copy's verdict when its folder says more than the sandbox's rule; else None."""
    skipped = not_sent(trip)
    if skipped is not None:
        return skipped
    if not trip.local_copies:
        return None
    folder = trip.local_copies[0].folder
    if any(word in folder.lower() for word in _JUNK):
        return Outcome(
            Status.WARN,
            f"The copy in {trip.address} was filed as spam ({folder})",
            f"The test message's copy is in the folder {folder}: the company's spam filter "
            "judged it. A filter that files candidates' mail as spam may also keep it from "
            "the redirection.",
            Cause.POLICY_REJECTED,
            "Exempt mail to the recruiting address from junk filing (Exchange: a mail flow rule "
            "setting SCL -1; Google Workspace: an inbound gateway or approved senders; "
            "Postfix/rspamd: a per-recipient whitelist).",
        )
    return Outcome(
        Status.PASS,
        f"A copy stays in {trip.address} ({folder})",
        f"{len(trip.local_copies)} copy kept on the company server, filed in {folder}.",
    )


def classify_live_loop(trip: RoundTrip) -> Outcome | None:
    """The loop verdict when no bounce named a loop; None otherwise."""
    skipped = not_sent(trip)
    if skipped is not None:
        return skipped
    if len(trip.local_copies) > 1:
        return Outcome(
            Status.WARN,
            f"{len(trip.local_copies)} copies of the test message in {trip.address}",
            "Folders: " + ", ".join(a.folder for a in trip.local_copies) + ": the message "
            "was delivered more than once, a sign of two rules or a loop.",
            remediation=f"Keep one redirection rule for {trip.address}.",
        )
    if trip.bounces or trip.delivery_error is not None or not trip.token:
        return None
    return Outcome(
        Status.PASS,
        "No loop reported",
        f"No bounce came back within {trip.waited_s:.0f} s, and {len(trip.local_copies)} copy "
        "was kept: nothing circled back.",
    )
