"""
The seams between geniam's layers, as zope.interface declarations.

Every implementation has a C{verifyObject} test, so a new island type,
store or gateway plugs in without touching the others.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface


class IAuthorizer(Interface):
    """
    Decides what a caller may do: the seam between the protocol edge and
    the trust layer (L{geniam.trust.verifier.CredentialVerifier}).

    The edge hands it who called (the TLS peer's verified certificate) and
    what they presented; the managers work only with the
    L{geniam.trust.verdicts.Grant} it answers: the effective caller (the
    user a tool speaks for, if it does), the user behind the call, the
    privileges, the expiry to cap granted times at and the verified
    credentials that granted it.
    """

    def authorize(peer, credentials, method, target_urn=None, options=None):  # type: ignore[misc]
        """
        Decide whether C{peer} may call C{method} on C{target_urn}.

        @param peer: the TLS client's L{geniam.trust.gid.GID}.
        @param credentials: the call's C{credentials} argument as received.
        @param method: the AM API method name.
        @param target_urn: the slice URN the call is about, if any.
        @param options: the call's options (C{geni_speaking_for} is read).
        @return: a Deferred firing with a L{geniam.trust.verdicts.Grant},
            or failing with a L{geniam.errors.GeniError} (FORBIDDEN, a
            CREDENTIAL_* code, or BADARGS) whose output says why.
        """


class IForwardingPolicy(Interface):
    """
    Decides which of a caller's credentials a slice manager may send its
    aggregates, and how (L{geniam.trust.forwarding.CredentialForwarder}).

    The aggregates see the slice manager's own certificate as the caller,
    so a credential is forwarded only as a delegation to the slice manager
    or together with a speaks-for credential naming it; calls about no
    slice use the slice manager's own credential. Answers are
    L{geniam.trust.forwarding.Forwarding} values.
    """

    def for_resources(peer, credentials, options):  # type: ignore[misc]
        """
        Authorise a call about no slice (ListResources) and say what to send.

        @param peer: the TLS client's L{geniam.trust.gid.GID}.
        @param credentials: the call's C{credentials} argument as received.
        @param options: the call's options.
        @return: a coroutine or Deferred giving a C{Forwarding}; fails with
            a L{geniam.errors.GeniError} (FORBIDDEN or a credential error).
        """

    def for_slice(peer, credentials, method, slice_urn, options):  # type: ignore[misc]
        """
        Authorise a call about a slice and say what to send.

        @param slice_urn: the slice, or C{None} when the call names only
            slivers (the slice is then taken from the credentials).
        @return: a coroutine or Deferred giving a C{Forwarding}; fails with
            a L{geniam.errors.GeniError} (FORBIDDEN saying what to provide,
            or a credential error).
        """


class IGatewayVerbs(Interface):
    """
    The verbs that change an island gateway's configuration (a
    L{geniam.gateway.config.GatewayConfig}), shared by the aggregate
    manager's view of the gateway (L{IGatewayAgent}) and the gateway agent's
    back ends (L{IGatewayBackend}).

    Every verb returns a Deferred that fires with None and is idempotent:
    applying what is already applied, or removing what is absent, succeeds.
    Failures are L{geniam.errors.GeniError}s.
    """

    def set_user_auth(keys):  # type: ignore[misc]
        """Add these SSH public keys (a sequence of key lines) to the gateway's authorised users."""

    def rem_user_auth(keys):  # type: ignore[misc]
        """Remove these SSH public keys from the authorised users."""

    def set_tcp_proxy(controller):  # type: ignore[misc]
        """Forward the gateway's controller port to C{controller} (C{host:port})."""

    def rem_tcp_proxy():  # type: ignore[misc]
        """Stop forwarding the controller port."""

    def set_ovs(vlan_map):  # type: ignore[misc]
        """Replace the VLAN map with C{vlan_map} (C{{testbed VLAN: island VLAN}}, strings)."""

    def rem_ovs():  # type: ignore[misc]
        """Remove the VLAN map."""

    def reset():  # type: ignore[misc]
        """Restore the default configuration: no users, no proxy, no VLAN map."""


class IGatewayAgent(IGatewayVerbs):
    """
    The island gateway, as the aggregate manager sees it: the PB client of
    its agent (L{geniam.protocols.pbclient}) or the in-process gateway
    (L{geniam.agent.inprocess}).

    The AM hands it values it validated where the request entered; the
    agent validates them again where the link delivers them. Failures are
    RPCERROR when the agent is unreachable, REFUSED or BADARGS when it
    declined.
    """

    def get_switches():  # type: ignore[misc]
        """Fire with the list of switch DPIDs (strings like C{00:00:00:00:00:00:00:01})."""

    def get_links():  # type: ignore[misc]
        """Fire with the list of links as C{DPID:port-DPID:port} strings."""

    def state():  # type: ignore[misc]
        """
        Fire with what is applied now, in the plain-data form of
        L{geniam.gateway.config.GatewayConfig}: C{{"users": [key, ...],
        "proxy": "host:port" or "", "vlans": {testbed: island}}}.
        """


class IGatewayBackend(IGatewayVerbs):
    """
    The device side of a gateway agent: applies and reports one configuration.

    Arguments are already validated and normalised (where the PB link
    delivered them, or by the in-process gateway); the back end enforces the
    gateway-wide limits of L{geniam.gateway.config}. REFUSED when the
    gateway declines (a tool failed or a limit was hit). Callers serialise
    calls: a back end never sees two calls at once.
    """

    def start():  # type: ignore[misc]
        """Load the persisted state and re-apply what must run; fire with None when ready."""

    def stop():  # type: ignore[misc]
        """Release processes the back end runs; fire with None when done."""

    def switches():  # type: ignore[misc]
        """Fire with the island's switch DPIDs (a list of strings)."""

    def links():  # type: ignore[misc]
        """Fire with the island's links as C{DPID:port-DPID:port} strings."""

    def state():  # type: ignore[misc]
        """Fire with the L{geniam.gateway.config.GatewayConfig} applied now."""


class IStore(Interface):
    """
    Where an island's bookings (L{geniam.booking.Booking}) persist.

    Every method returns a Deferred. Every state change is one transaction.
    The store, not its caller, guarantees that no two live (allocated or
    provisioned) bookings of its island overlap: L{insert} and L{update}
    check and write in one transaction that no concurrent writer can
    interleave with, even in another process sharing the database (SQLite:
    C{BEGIN IMMEDIATE}; PostgreSQL: an exclusion constraint on the island
    and the slot's range over live rows, or a per-island lock taken first).
    The contract tests in C{tests.store.test_contract} hold every implementation to
    this.

    Failures are L{geniam.errors.GeniError} subclasses:
    L{geniam.booking.BookingConflict} (UNAVAILABLE),
    L{geniam.store.errors.StaleBooking} (BUSY),
    L{geniam.store.errors.UnknownBooking} (SEARCHFAILED),
    L{geniam.store.errors.DuplicateBooking} (ALREADYEXISTS) and
    L{geniam.store.errors.StoreError} (DBERROR).

    URNs are compared in their normalised form (L{geniam.urn.URN.key}).
    """

    island = Attribute("The name of the island whose bookings this store holds (a C{str}).")

    def start():  # type: ignore[misc]
        """
        Open the database and create or upgrade its schema; fire with None.

        Fails with L{geniam.store.errors.SchemaTooNew} if the database was
        written by a newer version of geniam.
        """

    def stop():  # type: ignore[misc]
        """Close the database once work in flight is done; fire with None."""

    def insert(booking):  # type: ignore[misc]
        """
        Store a new booking; fire with it as stored (C{version} 1).

        A live booking is stored only if no live booking of the island
        overlaps its slot; otherwise fail with
        L{geniam.booking.BookingConflict} naming the conflicting slot.
        Fails with L{geniam.store.errors.DuplicateBooking} if its sliver
        URN is already used.
        """

    def get(sliver_urn):  # type: ignore[misc]
        """Fire with the booking of this sliver URN, or None if there is none."""

    def list_by_slice(slice_urn, live_only=False):  # type: ignore[misc]
        """Fire with the slice's bookings (only the live ones if C{live_only}), by slot start."""

    def list_live(window, limit=None):  # type: ignore[misc]
        """
        Fire with the live bookings whose slot overlaps the
        L{geniam.booking.Slot} C{window}, by slot start (at most C{limit}).
        """

    def list_applied():  # type: ignore[misc]
        """Fire with the bookings whose configuration is on the gateway (C{applied})."""

    def due(now, limit=500):  # type: ignore[misc]
        """
        Fire with a L{geniam.booking.Due}: the bookings that need an action
        at C{now}, exactly as L{geniam.booking.due} would sort them (at most
        C{limit} of each kind, earliest first).
        """

    def next_boundary(after):  # type: ignore[misc]
        """
        Fire with the earliest moment later than C{after} when a live
        booking changes by itself (as L{geniam.booking.next_boundary}), or None.
        """

    def update(bookings):  # type: ignore[misc]
        """
        Replace stored bookings with these new values, all or none, in one
        transaction; fire with them as stored (each C{version} plus one).

        Each booking's C{version} must equal the stored one, else fail with
        L{geniam.store.errors.StaleBooking}; an unknown sliver fails with
        L{geniam.store.errors.UnknownBooking}. A live result must not
        overlap another live booking (those in the same call included),
        else fail with L{geniam.booking.BookingConflict}.
        """

    def set_shutdown(slice_urn, when):  # type: ignore[misc]
        """Mark the slice shut down at C{when}; fire with True, or False if it already was."""

    def is_shutdown(slice_urn):  # type: ignore[misc]
        """Fire with True if the slice has been shut down."""

    def count(states=None):  # type: ignore[misc]
        """Fire with the number of bookings (in any of C{states}, if given)."""

    def get_transaction(slice_urn):  # type: ignore[misc]
        """Fire with the slice's open L{geniam.booking.transactions.Transaction}, or None."""

    def list_transactions():  # type: ignore[misc]
        """Fire with every open transaction of the island, by C{commit_by}."""

    def save_transaction(transaction, insert, update):  # type: ignore[misc]
        """
        In one transaction: open C{transaction} (its C{version} 0; fail with
        L{geniam.store.transactions.TransactionExists} if one is open) or
        replace it (fail with L{geniam.store.transactions.StaleTransaction}
        unless its C{version} is the stored one), store the bookings of
        C{update} and insert those of C{insert}, as L{update} and L{insert}
        do; all or none. Fire with the transaction and bookings as stored.
        """

    def close_transaction(transaction, bookings, outcome=None):  # type: ignore[misc]
        """
        In one transaction: remove C{transaction} (fail with
        L{geniam.store.transactions.NoTransaction} if none is open, or
        C{StaleTransaction} if it changed), store C{bookings} as L{update}
        does, and record C{outcome} (a
        L{geniam.booking.transactions.TransactionOutcome}) if given; all or
        none. Fire with the bookings as stored.
        """

    def get_transaction_outcome(transaction_id):  # type: ignore[misc]
        """Fire with the recorded L{geniam.booking.transactions.TransactionOutcome} of C{transaction_id}, or None."""

    def forget_transaction_outcomes(now):  # type: ignore[misc]
        """Forget the transaction outcomes whose C{keep_until} is C{now} or before."""

    def add_maintenance(window):  # type: ignore[misc]
        """Store an operator's maintenance window (L{geniam.booking.maintenance.MaintenanceWindow})."""

    def remove_maintenance(window_id):  # type: ignore[misc]
        """Remove a maintenance window; fire with it, or None if there was none of that name."""

    def list_maintenance(window):  # type: ignore[misc]
        """Fire with the maintenance windows overlapping the slot C{window}, by start."""

    def add_audit(entry):  # type: ignore[misc]
        """Append an operator action (L{geniam.store.operatorrows.AuditEntry}) to the audit log."""

    def list_audit(since=0.0, limit=1000):  # type: ignore[misc]
        """Fire with the audit log from C{since} on, oldest first."""


class IResourceManager(Interface):
    """
    An island's resource manager: books the whole island by time slot and
    configures its gateway when slots begin and end.

    Every method returns a Deferred. Expected failures are
    L{geniam.errors.GeniError}; each method names the codes it uses.
    Times are float POSIX seconds; bookings are L{geniam.booking.Booking}.

    Methods that take C{sliver_urns} act on all of them or on none: they
    check every booking first (unknown, deleted, ended or expired slivers
    fail the call with SEARCHFAILED; a slice that was shut down fails it
    with REFUSED) and change the store in one transaction where the
    change is the store's alone (L{renew}, L{provision}). Gateway work
    that fails afterwards does not fail the call: the booking comes back
    C{failed} with C{error} set, and is retried while its slot lasts. For
    C{geni_best_effort}, call once per sliver URN and report each
    GeniError against its sliver.
    """

    authority = Attribute("The AM authority named in the sliver URNs it issues (a C{str}).")
    allocation_ttl = Attribute("How long an unprovisioned allocation is held, in seconds.")
    max_slot_length = Attribute("The longest slot one booking may hold, in seconds.")

    def start():  # type: ignore[misc]
        """
        Start the periodic checks; fire with None once the first check has
        caught up with starts and ends missed while the manager was down.
        """

    def stop():  # type: ignore[misc]
        """Stop the periodic checks; fire with None once work in flight is done."""

    def inventory():  # type: ignore[misc]
        """
        Fire with the island's L{geniam.managers.inventory.KnownInventory}: its
        switches and links as configured, refreshed from the gateway when it
        answers. Never fails: an unreachable gateway leaves the last known
        inventory.
        """

    def booked_slots(window):  # type: ignore[misc]
        """
        Fire with the L{geniam.booking.Slot}s of live bookings overlapping
        C{window}, by start; never who holds them.
        """

    def check_availability(slot):  # type: ignore[misc]
        """Fire with True if no live booking overlaps C{slot}."""

    def allocate(slice_urn, owner_urn, owner_email, slot, credential_expires, controller=None, vlan_map=None):  # type: ignore[misc]
        """
        Book the whole island for C{slot}; fire with the new allocated booking.

        Its allocation expires at the earliest of now plus the allocation
        TTL, C{credential_expires} (None: no limit) and the slot's end.
        C{controller} (C{host:port}, held to the manager's controller policy)
        and C{vlan_map} (already validated where the request entered) may be
        given now or at L{provision}.

        Fails with BADARGS for malformed arguments, OUTOFRANGE for a slot
        already over, too long or ending after C{credential_expires},
        UNAVAILABLE (L{geniam.booking.BookingConflict}) if a live booking
        overlaps the slot (the message names that booking's time window,
        not its slice), REFUSED if the slice was shut down.
        """

    def provision(sliver_urns, users=None, controller=None, vlan_map=None, slot=None, credential_expires=None):  # type: ignore[misc]
        """
        Approve allocated bookings, or update provisioned ones; fire with
        the bookings as they are now, in the order asked.

        C{sliver_urns} are URN strings or bookings. C{users} are
        L{geniam.booking.values.UserKeys} and C{vlan_map} a VLAN map, both
        already validated where the request entered (the AM API adapter's
        L{geniam.managers.arguments}); C{controller} is held to the
        manager's controller policy. C{None} keeps a
        value; C{[]}, C{""} and C{{}} clear users, controller and VLAN map.
        An allocated booking is approved only for the slot it was allocated
        (C{slot} None or equal). A provisioned booking takes the new values
        and, if C{slot} is given, moves to that slot if it is free (once the
        slot has begun, only its end may change); if its slot is in
        progress the changes are pushed to the gateway at once.

        Fails with BADARGS for malformed arguments, SEARCHFAILED for unknown
        or no longer live slivers, REFUSED for a different slot on first
        provision, a moved start of a started slot or a shut-down slice,
        OUTOFRANGE as in L{allocate}, UNAVAILABLE for a new slot that is
        taken, BUSY if the bookings kept changing meanwhile.
        """

    def renew(sliver_urns, end, credential_expires=None, extend_alap=False):  # type: ignore[misc]
        """
        Move the end of the bookings' slots to C{end}; fire with the
        bookings as they are now.

        An allocation's expiry is recomputed from now. With C{extend_alap},
        each slot ends at the furthest time no later than C{end} that is
        free, within the maximum slot length and no later than
        C{credential_expires}.

        Fails with SEARCHFAILED for unknown or no longer live slivers,
        OUTOFRANGE for an end not after the start and now, after
        C{credential_expires} or beyond the maximum slot length,
        UNAVAILABLE if the longer slot is taken, REFUSED for a shut-down
        slice, BUSY if the bookings kept changing meanwhile.
        """

    def delete(sliver_urns):  # type: ignore[misc]
        """
        Release the bookings, removing their configuration from the gateway
        first if their slot is in progress; fire with the deleted bookings.

        If the gateway fails, the bookings are deleted anyway with C{error}
        set, and the removal is retried in the background.

        Fails with SEARCHFAILED for unknown or no longer live slivers,
        REFUSED for a shut-down slice.
        """

    def shutdown(slice_urn):  # type: ignore[misc]
        """
        Stop the slice at once (an operator's emergency stop): remove its
        configuration from the gateway, mark its provisioned bookings
        stopped and refuse further changes to the slice. Bookings are kept.
        Fire with the slice's live bookings as they are now (possibly
        empty). Repeating it succeeds. Fails with BADARGS for a malformed URN.
        """

    def perform_action(sliver_urns, action, users=None):  # type: ignore[misc]
        """
        Perform an operational action on provisioned bookings; fire with the
        bookings as they are now.

        C{geni_start}: apply the configuration now if the slot is in
        progress, else clear a stop so the slot starts automatically.
        C{geni_stop}: remove the configuration and keep the slot from
        starting. C{geni_restart}: reset the gateway and apply again while
        the slot is in progress; before it, as C{geni_start} (clear a stop:
        the configuration is applied at slot start). C{geni_update_users} (needs C{users},
        already validated L{geniam.booking.values.UserKeys}, only while
        C{ready}): listed users get exactly the listed keys, new users are
        added, others are kept.

        Fails with UNSUPPORTED for an unknown action or an allocated
        booking, BADARGS for absent C{users},
        SEARCHFAILED for unknown or no longer live slivers, REFUSED for
        C{geni_update_users} when not ready, or a
        shut-down slice.
        """

    def lookup(sliver_urns, include_dead=False):  # type: ignore[misc]
        """
        Fire with the bookings of these sliver URNs, in the order asked.

        Fails with BADARGS for a malformed URN and SEARCHFAILED for an
        unknown one, or for a deleted, ended or expired one unless
        C{include_dead}.
        """

    def slice_bookings(slice_urn, live_only=True):  # type: ignore[misc]
        """Fire with the slice's bookings, by slot start (possibly empty). BADARGS for a malformed URN."""

    def is_shut_down(slice_urn):  # type: ignore[misc]
        """Fire with True if the slice has been shut down."""


class IScheduleSource(Interface):
    """
    Where a calendar reads the schedules it shows: an aggregate manager's
    own island, or every island behind a slice manager.
    """

    def schedule(start, end):  # type: ignore[misc]
        """
        Fire with a L{geniam.calendar.schedule.Schedule} holding every
        block that overlaps C{[start, end)} (POSIX seconds), anonymous:
        never a slice or user. Unreachable islands are rows marked so,
        not failures.
        """


class IDriverLease(Interface):
    """
    The lease that makes one process the island's gateway driver, held
    through the database itself (so it ends when the holder's connection
    does).
    """

    def acquire():  # type: ignore[misc]
        """Try once to take the lease without waiting; fire with True if this process holds it now."""

    def confirm():  # type: ignore[misc]
        """Fire with True while this process still holds the lease it took, else False."""

    def release():  # type: ignore[misc]
        """Give the lease up (if held); fire with None."""
