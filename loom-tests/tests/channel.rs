//! Model checks of the byte channel (format 5: a record is committed by a plain store of
//! `tail` between the sender's two stores of `busy`, then published by the Release store
//! of its header, which receivers poll at `head`; the close is made final by recording
//! `end`). The process-wide barrier (`membarrier`) that sleepers and finalisers issue is
//! modelled as what it guarantees at its point: a `SeqCst` fence on their side, and each
//! compiler barrier of the busy side a `SeqCst` fence too (the crate does so under loom).
//! The fallback models make each thread stand for a process of its own kind
//! (`Channel::act_unregistered_for_tests`: a process that cannot issue the barrier, which
//! fences on its busy side and keeps `busy` at `IDLE_FENCING`;
//! `Channel::act_unpaired_for_tests`: a registered process whose compiler barriers
//! nothing pairs with, since no party issues the barrier, so they are no fence). That a
//! waker fences once `fenced` is set, and the kernel's refusal itself, are process tests
//! (`tests/channel_sleeper.rs`, `tests/channel_no_barrier.rs`).
//!
//! - a reservation's commit and abort racing a receiver: it sees exactly the committed
//!   messages, whole and in order;
//! - a sender and a receiver each sleeping for the other (no lost wakeup), also with a
//!   held send side (`SendSide`) streaming into a full ring, and with a held receive side
//!   (`RecvSide`) receiving, or draining, from a sender asleep for room;
//! - `close` racing a blocked receiver or sender, also under a held receive side: each
//!   wakes and ends, and a receiver gets what was sent first;
//! - a send racing `close`, two sends racing a close from a third thread, and a held send
//!   side streaming while another thread closes (the close made final through `busy` and
//!   the barrier, or by the side itself): a send acknowledged `Ok` is received, never
//!   behind a `Disconnected`, and a refused one never;
//! - the fallback: a held send side racing a close, every party without the barrier (the
//!   closer relies on the holder's `IDLE_FENCING`), or the side held by a registered
//!   process (the close is made final by the side: at its next send, or when it lets the
//!   side go, even with no receiver to help; likewise a reservation given back); a
//!   registered sender taking over from one without the barrier (`claim_busy` fences);
//! - two receivers racing for two messages: one each, never the same one;
//! - records committed before their headers are stored, racing a receiver that polls and
//!   sleeps, across a wrap (padding, then the record at 0 over a stale header, after an
//!   aborted reservation and a shorter `commit_len`): every message whole and in order,
//!   none slept through;
//! - the dead-producer skip: a sender killed between its commit and its header store,
//!   holding the send lock, repaired with a `SKIP` record (on a wrap, `SKIP` at 0 and
//!   padding) by whoever takes the lock from it: a polling receiver or a polling later
//!   sender racing for it, a later blocking sender waking a receiver asleep at the dead
//!   record, or two receivers racing in `try_recv`. The receiver never gets the dead
//!   message, gets the later one, and `lost()` stays 0 (that send was never acknowledged);
//! - the repair of a dead receiver's claim: a receiver and a sender that finds the ring
//!   full race to take the receive lock from the dead holder; the loss is counted once,
//!   the rest received once and in order.
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use shmstate::lock::rwlock::DEAD_UNDER_LOOM;
use shmstate::sync::Ordering;
use shmstate::{Channel, ChannelOptions, RecvError, SendError, TryRecvError, TrySendError};

/// A 64-byte ring: room for two 16-byte messages (24 bytes each with their headers, and
/// the 8 bytes of slack a sender keeps after its record).
fn small() -> Arc<Box<Channel>> {
    Arc::new(Channel::new(ChannelOptions::new(64)).unwrap())
}

/// Index of `tail` among the `u64` words of [`Channel::hostile_words`].
const TAIL: usize = 3;
/// Index of the ring's first word among the `u64` words of [`Channel::hostile_words`].
const RING: usize = 9;
/// The header words [`Channel::hostile_words`] lists after the ring (`end`, `busy`,
/// `fenced`).
const AFTER_RING: usize = 3;

/// Sends and receives messages of these lengths (the payload bytes `0xA0 + i`, nonzero),
/// moving the cursors on by their records and leaving their bytes in the ring: stale
/// headers and payload, which a receiver must never take for a record.
fn advance(ch: &Channel, lens: &[usize]) {
    let mut out = Vec::new();
    for (i, &n) in lens.iter().enumerate() {
        ch.send(&vec![0xA0 + i as u8; n]).unwrap();
        ch.recv(&mut out).unwrap();
    }
}

/// [`advance`] to ring offset 40 on the second lap (records of 24, 24, 16, then 24 and
/// 16 bytes): the word at 0 holds a stale 16-byte message's header, the word at 56 stale
/// payload.
const TO_40: &[usize] = &[16, 16, 8, 16, 8];

/// [`advance`] to ring offset 48 on the second lap (records of 24, 24, 16, then three of
/// 16 bytes): the word at 0 holds a stale 8-byte message's header.
const TO_48: &[usize] = &[16, 16, 8, 8, 8, 8];

/// Sends `msg`, then puts back what its header stores replaced and leaves the send lock
/// held by a thread that the lock's probe reports dead: the state a sender killed
/// between its commit (the compare-exchange of `tail`, after its `pending` and the
/// zeroed word after the record) and its header store leaves. On a wrap neither header
/// was stored: the padding's word is 0, the record's word at 0 keeps its stale header.
fn send_and_die_before_the_header(ch: &Channel, msg: &[u8]) {
    let (words, locks) = ch.hostile_words();
    let ring = &words[RING..words.len() - AFTER_RING];
    let cap = ring.len() * 8;
    let from = words[TAIL].load(Ordering::Relaxed) as u32 as usize % cap;
    let rec = 8 + msg.len().div_ceil(8) * 8;
    let rec_at = if from + rec > cap { 0 } else { from };
    let headers = [from, rec_at].map(|at| (at / 8, ring[at / 8].load(Ordering::Relaxed)));
    ch.send(msg).unwrap();
    for (i, w) in headers {
        ring[i].store(w, Ordering::Relaxed);
    }
    // `busy` (the second word after the ring): set from before the commit to after the
    // header.
    words[words.len() - 2].store(1, Ordering::Relaxed);
    locks[0].store(DEAD_UNDER_LOOM, Ordering::Relaxed);
}

/// Every record received or stepped over, nothing counted lost.
fn assert_drained(ch: &Channel) {
    assert_eq!(ch.lost(), 0);
    assert!(ch.is_empty());
    assert_eq!(ch.bytes_used(), 0);
}

#[test]
fn commit_and_abort_racing_a_receiver_deliver_exactly_the_commits() {
    loom::model(|| {
        let ch = small();
        let tx = ch.clone();
        let h = thread::spawn(move || {
            let mut slot = tx.reserve(16).unwrap();
            slot.write_at(0, &[1; 16]);
            slot.commit().unwrap();
            let mut slot = tx.reserve(8).unwrap();
            slot.write_at(0, &[9; 8]);
            slot.abort();
            let mut slot = tx.reserve(16).unwrap();
            slot.write_at(0, &[2; 8]);
            slot.commit_len(8).unwrap();
        });
        let mut out = Vec::new();
        assert_eq!(ch.recv(&mut out), Ok(16));
        assert_eq!(out, [1; 16]);
        assert_eq!(ch.recv(&mut out), Ok(8));
        assert_eq!(out, [2; 8]);
        h.join().unwrap();
        assert!(ch.is_empty());
        assert_eq!(ch.bytes_used(), 0);
    });
}

#[test]
fn a_send_wakes_a_sleeping_receiver_and_a_receive_wakes_a_sleeping_sender() {
    loom::model(|| {
        let ch = small();
        let tx = ch.clone();
        // The third message waits for room; the receiver waits for messages.
        let h = thread::spawn(move || {
            for i in 0..3u8 {
                tx.send(&[i; 16]).unwrap();
            }
        });
        let mut out = Vec::new();
        for i in 0..3u8 {
            assert_eq!(ch.recv(&mut out), Ok(16));
            assert_eq!(out, [i; 16]);
        }
        h.join().unwrap();
    });
}

#[test]
fn close_racing_a_blocked_receiver_wakes_it_after_what_was_sent() {
    loom::model(|| {
        let ch = small();
        let rx = ch.clone();
        let h = thread::spawn(move || {
            let mut out = Vec::new();
            assert_eq!(rx.recv(&mut out), Ok(1));
            assert_eq!(out, [7]);
            assert_eq!(rx.recv(&mut out), Err(RecvError::Disconnected));
        });
        ch.send(&[7]).unwrap();
        ch.close();
        h.join().unwrap();
    });
}

#[test]
fn close_racing_a_blocked_sender_wakes_it() {
    loom::model(|| {
        let ch = small();
        ch.send(&[0; 16]).unwrap();
        ch.send(&[0; 16]).unwrap();
        let tx = ch.clone();
        let h = thread::spawn(move || tx.send(&[1; 16]));
        ch.close();
        assert_eq!(h.join().unwrap(), Err(SendError::Disconnected));
        // What was sent before the close is still received.
        let mut out = Vec::new();
        assert_eq!(ch.recv(&mut out), Ok(16));
        assert_eq!(ch.recv(&mut out), Ok(16));
        assert_eq!(ch.recv(&mut out), Err(RecvError::Disconnected));
    });
}

#[test]
fn two_receivers_racing_for_two_messages_get_one_each() {
    loom::model(|| {
        let ch = small();
        let rxs: Vec<_> = (0..2)
            .map(|_| {
                let rx = ch.clone();
                thread::spawn(move || {
                    let mut out = Vec::new();
                    assert_eq!(rx.recv(&mut out), Ok(1));
                    out[0]
                })
            })
            .collect();
        ch.send(&[1]).unwrap();
        ch.send(&[2]).unwrap();
        let mut got: Vec<u8> = rxs.into_iter().map(|h| h.join().unwrap()).collect();
        got.sort_unstable();
        assert_eq!(got, [1, 2]);
        assert!(ch.is_empty());
        assert_eq!(ch.bytes_used(), 0);
    });
}

/// Runs `look` on a small channel while another thread closes it; then the channel is
/// closed for every `try_` receive.
fn while_another_thread_closes(look: fn(&Channel)) {
    loom::model(move || {
        let ch = small();
        let closer = ch.clone();
        let h = thread::spawn(move || closer.close());
        look(&ch);
        h.join().unwrap();
        assert_eq!(
            ch.try_recv(&mut Vec::new()),
            Err(TryRecvError::Disconnected)
        );
    });
}

/// A `try_` receive without a side that comes after its thread saw the channel closed
/// (`is_closed`) reports `Disconnected`, never `Empty`, even at a look that does not read
/// `tail` (under loom the first one does not): `close` sets the config line's hint before
/// the `CLOSED` bit, so whoever acquires the bit sees the hint.
#[test]
fn a_try_recv_after_the_close_is_seen_reports_disconnected() {
    while_another_thread_closes(|ch| {
        if ch.is_closed() {
            assert_eq!(
                ch.try_recv(&mut Vec::new()),
                Err(TryRecvError::Disconnected)
            );
        }
    });
}

/// A thread whose send was refused for the close then polls without a side: it gets
/// `Disconnected`, never `Empty` (the refused compare-exchange acquires the close, so the
/// thread sees the config line's hint even at a look that does not read `tail`).
#[test]
fn a_try_recv_after_a_refused_send_reports_disconnected() {
    while_another_thread_closes(|ch| {
        let mut out = Vec::new();
        if ch.send(&[1; 16]) == Err(SendError::Disconnected) {
            assert_eq!(ch.try_recv(&mut out), Err(TryRecvError::Disconnected));
        } else {
            assert_eq!(ch.try_recv(&mut out), Ok(16));
        }
    });
}

/// A send racing `close`: the receiver gets `Disconnected` only if the send was refused;
/// a send acknowledged `Ok` is always received first.
#[test]
fn a_send_acked_ok_is_never_behind_a_disconnected() {
    loom::model(|| {
        let ch = small();
        let tx = ch.clone();
        let h = thread::spawn(move || tx.send(&[1]));
        ch.close();
        let mut out = Vec::new();
        let r = ch.recv(&mut out);
        let sent = h.join().unwrap();
        match sent {
            Ok(()) => {
                assert_eq!(r, Ok(1), "a send acknowledged Ok is received");
                assert_eq!(ch.recv(&mut out), Err(RecvError::Disconnected));
            }
            Err(e) => {
                assert_eq!(e, SendError::Disconnected);
                assert_eq!(r, Err(RecvError::Disconnected));
            }
        }
    });
}

/// A held send side sends three messages into a ring with room for two, so that it
/// waits for room holding the side while the receiver waits for messages: no lost
/// wakeup either way, every message whole and in order, and another sender kept out
/// until the side is dropped.
#[test]
fn a_held_send_side_and_a_sleeping_receiver_wake_each_other() {
    loom::model(|| {
        let ch = small();
        let tx = ch.clone();
        let h = thread::spawn(move || {
            let mut side = tx.send_side().unwrap();
            for i in 0..3u8 {
                side.send(&[i; 16]).unwrap();
            }
        });
        let mut out = Vec::new();
        for i in 0..3u8 {
            assert_eq!(ch.recv(&mut out), Ok(16));
            assert_eq!(out, [i; 16]);
        }
        h.join().unwrap();
        assert!(ch.is_empty());
        ch.try_send(&[3; 16]).unwrap();
    });
}

/// Runs `send` (which sends `[1]`, then `[2]`, stopping at the first refusal, and returns
/// how many were acknowledged `Ok`) racing a `close` from a third thread while the
/// receiver drains: the messages received are exactly the sends acknowledged `Ok` (a
/// prefix, one sender), and none that was refused; then `Disconnected`, and the close is
/// final once the closer and the sender are done.
fn sends_racing_a_close(send: fn(&Channel) -> u8) {
    sends_racing_a_close_as(send, [registered, registered, registered]);
}

/// The calling thread stands for a registered process, in a model where every party
/// issues the barrier (the default).
fn registered() {}

/// [`sends_racing_a_close`], with each party (the sender, the closer, the receiver)
/// first calling its function of `modes`: what its thread stands for.
fn sends_racing_a_close_as(send: fn(&Channel) -> u8, modes: [fn(); 3]) {
    loom::model(move || {
        let ch = small();
        let tx = ch.clone();
        let closer = ch.clone();
        let h = thread::spawn(move || {
            modes[0]();
            send(&tx)
        });
        let c = thread::spawn(move || {
            modes[1]();
            closer.close()
        });
        modes[2]();
        let mut out = Vec::new();
        let mut got = 0u8;
        loop {
            match ch.recv(&mut out) {
                Ok(_) => {
                    got += 1;
                    assert_eq!(out, [got]);
                }
                Err(e) => {
                    assert_eq!(e, RecvError::Disconnected);
                    break;
                }
            }
        }
        c.join().unwrap();
        assert_eq!(h.join().unwrap(), got);
        assert!(ch.is_closed());
    });
}

/// Sends `[1]`, then `[2]` through `send` (whether it was acknowledged), stopping at the
/// first refusal: how many were acknowledged.
fn send_two(mut send: impl FnMut(&[u8]) -> bool) -> u8 {
    let mut acked = 0u8;
    for i in 1..=2u8 {
        if !send(&[i]) {
            break;
        }
        acked = i;
    }
    acked
}

/// Two sends racing a `close` from a third thread (each taking the send lock).
#[test]
fn sends_racing_a_close_are_received_exactly_when_acknowledged() {
    sends_racing_a_close(|tx| send_two(|m| tx.send(m).is_ok()));
}

/// A held send side streaming while another thread closes: the closer cannot take the
/// send lock, so it makes the close final through the barrier and `busy` (or leaves it to
/// the side, which makes it final when it sees `closed` after clearing `busy`, or at its
/// next send).
#[test]
fn a_held_send_side_racing_a_close_is_received_exactly_when_acknowledged() {
    sends_racing_a_close(held_side_sends_two);
}

/// A held send side streaming while another thread closes, every party in a process
/// that cannot issue the barrier: the closer makes the close final through the holder's
/// `IDLE_FENCING` (its fence before each check of `closed` pairs with the closer's), or
/// leaves it to the side.
#[test]
fn without_the_barrier_a_close_racing_a_fencing_held_side_is_received_exactly_when_acknowledged() {
    sends_racing_a_close_as(held_side_sends_two, [refused, refused, refused]);
}

/// The same with the side held by a registered process whose compiler barriers nothing
/// pairs with (the closer and the receiver cannot issue the barrier): its idle value
/// `IDLE` promises nothing to them, so the close is made final by the side (at its next
/// send, or when it lets the side go), never by them through `busy`.
#[test]
fn without_the_barrier_a_close_racing_a_registered_held_side_waits_for_the_side() {
    sends_racing_a_close_as(held_side_sends_two, [unpaired, refused, refused]);
}

/// A registered process lets its send side go while a process without the barrier
/// closes: once both are done the close is final, with no receiver to help. The holder
/// looks at `closed` after its unlock and a fence (`let_go`), the closer at the lock again
/// after its fence (`finalise`): one of them takes the lock and records `end`.
#[test]
fn without_the_barrier_a_close_racing_a_registered_side_let_go_is_final_once_both_are_done() {
    let_go_racing_a_close(held_side_sends_two);
}

/// The same with a reservation given back unsent.
#[test]
fn without_the_barrier_a_close_racing_a_registered_slot_given_back_is_final_once_both_are_done() {
    let_go_racing_a_close(|tx| {
        if let Ok(mut slot) = tx.reserve(1) {
            slot.write_at(0, &[9]);
            slot.abort();
        }
        0
    });
}

/// Runs `hold` (which takes the send lock, may send, lets it go without a send, and
/// returns how many sends were acknowledged `Ok`) in a thread standing for a registered
/// process, racing a close from a process without the barrier; then the close is final,
/// and the channel holds exactly the acknowledged messages. Two threads: searched with
/// up to three preemptions whatever `LOOM_MAX_PREEMPTIONS` says (a fraction of a second;
/// the closer's second look at the lock is needed only in schedules with three).
fn let_go_racing_a_close(hold: fn(&Channel) -> u8) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(builder.preemption_bound.map_or(3, |b| b.max(3)));
    builder.check(move || {
        let ch = small();
        let tx = ch.clone();
        let h = thread::spawn(move || {
            unpaired();
            hold(&tx)
        });
        refused();
        ch.close();
        let acked = h.join().unwrap();
        assert!(
            ch.is_closed(),
            "not final once the closer and the holder are done"
        );
        let mut out = Vec::new();
        for i in 1..=acked {
            assert_eq!(ch.try_recv(&mut out), Ok(1));
            assert_eq!(out, [i]);
        }
        assert_eq!(ch.try_recv(&mut out), Err(TryRecvError::Disconnected));
    });
}

/// Two senders, one in a process without the barrier and one in a registered process
/// (which holds the side for its send), racing a close from a process without the
/// barrier: the registered sender takes over the first's `IDLE_FENCING` and must not
/// leave it standing unfenced (`claim_busy`), or the closer would record `end` behind
/// its send. Once all are done, the channel holds exactly the sends acknowledged `Ok`,
/// then reports `Disconnected`. (The receiver drains afterwards: the race is between
/// the senders and the close's `end`, and a fourth thread makes the model too large.)
#[test]
fn without_the_barrier_a_registered_sender_after_a_fencing_one_racing_a_close() {
    loom::model(|| {
        let ch = small();
        let (a, b) = (ch.clone(), ch.clone());
        let ha = thread::spawn(move || {
            refused();
            a.send(&[1]).is_ok()
        });
        let hb = thread::spawn(move || {
            unpaired();
            match b.send_side() {
                Ok(mut side) => side.send(&[2]).is_ok(),
                Err(_) => false,
            }
        });
        refused();
        ch.close();
        let acked = [ha.join().unwrap(), hb.join().unwrap()];
        let mut got = [false; 2];
        let mut out = Vec::new();
        loop {
            match ch.try_recv(&mut out) {
                Ok(1) => {
                    let i = usize::from(out[0]) - 1;
                    assert!(!got[i], "message {} received twice", out[0]);
                    got[i] = true;
                }
                Ok(n) => panic!("a message of {n} bytes"),
                Err(e) => {
                    assert_eq!(e, TryRecvError::Disconnected);
                    break;
                }
            }
        }
        assert_eq!(got, acked);
        assert!(ch.is_closed());
    });
}

/// The calling thread stands for a process that cannot issue the barrier.
fn refused() {
    Channel::act_unregistered_for_tests();
}

/// The calling thread stands for a registered process in a model where nobody issues
/// the barrier.
fn unpaired() {
    Channel::act_unpaired_for_tests();
}

/// Takes the send side and sends `[1]`, then `[2]`, through it: how many were
/// acknowledged.
fn held_side_sends_two(tx: &Channel) -> u8 {
    match tx.send_side() {
        Ok(mut side) => send_two(|m| side.send(m).is_ok()),
        Err(_) => 0,
    }
}

/// A receiver holding the receive side (`RecvSide`) takes three messages from a sender
/// that must sleep for room: the side's releases wake the sender, and its commits wake
/// the side (a lost wakeup is a deadlock that loom reports).
#[test]
fn a_held_recv_side_and_a_sleeping_sender_wake_each_other() {
    loom::model(|| {
        let ch = small();
        let tx = ch.clone();
        let h = thread::spawn(move || {
            for i in 0..3u8 {
                tx.send(&[i; 16]).unwrap();
            }
        });
        let mut side = ch.recv_side().unwrap();
        let mut out = Vec::new();
        for i in 0..3u8 {
            assert_eq!(side.recv(&mut out), Ok(16));
            assert_eq!(out, [i; 16]);
        }
        drop(side);
        h.join().unwrap();
        assert!(ch.is_empty());
        assert_eq!(ch.bytes_used(), 0);
    });
}

/// A close racing a receive waiting under a held side: the side gets the message sent
/// before the close, then `Disconnected` (the close wakes it).
#[test]
fn a_close_wakes_a_receive_waiting_under_a_held_side() {
    loom::model(|| {
        let ch = small();
        let rx = ch.clone();
        let h = thread::spawn(move || {
            let mut side = rx.recv_side().unwrap();
            let mut out = Vec::new();
            assert_eq!(side.recv(&mut out), Ok(1));
            assert_eq!(out, [7]);
            assert_eq!(side.recv(&mut out), Err(RecvError::Disconnected));
        });
        ch.send(&[7]).unwrap();
        ch.close();
        h.join().unwrap();
    });
}

/// A held side's `drain` releases wake a sender asleep for room.
#[test]
fn a_held_recv_side_drain_wakes_a_sleeping_sender() {
    loom::model(|| {
        let ch = small();
        let tx = ch.clone();
        let h = thread::spawn(move || {
            for i in 0..3u8 {
                tx.send(&[i; 16]).unwrap();
            }
        });
        let mut side = ch.recv_side().unwrap();
        let mut next = 0u8;
        while next < 3 {
            let mut out = Vec::new();
            // One blocking receive, then whatever else is waiting.
            assert_eq!(side.recv(&mut out), Ok(16));
            assert_eq!(out, [next; 16]);
            next += 1;
            side.drain(8, |m| {
                assert_eq!(m, [next; 16]);
                next += 1;
            })
            .unwrap();
        }
        drop(side);
        h.join().unwrap();
    });
}

/// A sender whose records are committed (`tail`) before their headers are stored races a
/// receiver that polls the header at `head` and sleeps when there is none. From offset
/// 40, with stale bytes in the ring ([`TO_40`]): the first message at 40; a
/// reservation that would wrap, written and aborted; the same reservation committed
/// shorter (`commit_len`), which wraps: padding at 56, the record at 0 over a stale
/// header; the third message waits for the room the first one's release makes. The
/// receiver gets every message whole and in order, never a stale header or payload, and
/// never sleeps through one (a lost wakeup is a deadlock that loom reports).
#[test]
fn a_wrapping_record_published_after_its_commit_reaches_a_sleeping_receiver() {
    loom::model(|| {
        let ch = small();
        advance(&ch, TO_40);
        let tx = ch.clone();
        let h = thread::spawn(move || {
            tx.send(&[1; 8]).unwrap();
            let mut slot = tx.reserve(16).unwrap();
            slot.write_at(0, &[9; 16]);
            slot.abort();
            let mut slot = tx.reserve(16).unwrap();
            slot.write_at(0, &[2; 8]);
            slot.commit_len(8).unwrap();
            tx.send(&[3; 16]).unwrap();
        });
        let mut out = Vec::new();
        for m in [&[1; 8][..], &[2; 8], &[3; 16]] {
            assert_eq!(ch.recv(&mut out), Ok(m.len()));
            assert_eq!(out, m);
        }
        h.join().unwrap();
        assert!(ch.is_empty());
        assert_eq!(ch.bytes_used(), 0);
    });
}

/// [`small`], with a sender dead between its commit of a 16-byte message and its header
/// store ([`send_and_die_before_the_header`]): at 0, or with `wrap` from 48 ([`TO_48`]).
fn small_with_a_dead_sender(wrap: bool) -> Arc<Box<Channel>> {
    let ch = small();
    if wrap {
        advance(&ch, TO_48);
    }
    send_and_die_before_the_header(&ch, &[0xDD; 16]);
    ch
}

/// A sender died holding the send lock between its commit and its header store
/// ([`send_and_die_before_the_header`], a 16-byte message: at 0, or with `wrap` from 48
/// ([`TO_48`]), padding there and the record at 0). A receiver polling with `try_recv` and
/// a later sender polling with `try_send` race to take the lock from the dead holder:
/// whichever does writes a `SKIP` record over the dead one's (on a wrap, `SKIP` at 0 and
/// padding at 48). The receiver steps over it and gets the later message, never the dead
/// one's, nor `Corrupt`; `lost()` stays 0 (the dead send was never acknowledged). On a
/// wrap the later message fits only once the receiver has stepped over the `SKIP`.
fn dead_sender_polled_model(wrap: bool) {
    loom::model(move || {
        let ch = small_with_a_dead_sender(wrap);
        let tx = ch.clone();
        let h = thread::spawn(move || {
            loop {
                match tx.try_send(&[2; 16]) {
                    Ok(()) => break,
                    Err(TrySendError::Busy | TrySendError::Full) => thread::yield_now(),
                    Err(e) => panic!("try_send: {e:?}"),
                }
            }
        });
        let mut out = Vec::new();
        loop {
            match ch.try_recv(&mut out) {
                Ok(n) => {
                    assert_eq!(n, 16);
                    assert_eq!(out, [2; 16]);
                    break;
                }
                Err(TryRecvError::Empty | TryRecvError::Busy) => thread::yield_now(),
                Err(e) => panic!("try_recv: {e:?}"),
            }
        }
        h.join().unwrap();
        assert_drained(&ch);
    });
}

#[test]
fn a_polling_receiver_and_sender_skip_a_dead_senders_record() {
    dead_sender_polled_model(false);
}

#[test]
fn a_polling_receiver_and_sender_skip_a_dead_senders_wrapped_record() {
    dead_sender_polled_model(true);
}

/// A sender died between its commit and its header store, as in
/// [`dead_sender_polled_model`]; the receiver waits in `recv` (asleep: the record has no
/// header). A later sender takes the lock from the dead holder, writes the `SKIP`, wakes
/// the receiver and sends its message (on a wrap, after waiting for the room the
/// receiver's step over the `SKIP` releases). The receiver gets that message, never the
/// dead one's, and never sleeps through it; `lost()` stays 0.
fn dead_sender_sleeping_receiver_model(wrap: bool) {
    loom::model(move || {
        let ch = small_with_a_dead_sender(wrap);
        let tx = ch.clone();
        let h = thread::spawn(move || tx.send(&[2; 16]).unwrap());
        let mut out = Vec::new();
        assert_eq!(ch.recv(&mut out), Ok(16));
        assert_eq!(out, [2; 16]);
        h.join().unwrap();
        assert_drained(&ch);
    });
}

#[test]
fn a_later_sender_skips_a_dead_senders_record_and_wakes_the_receiver() {
    dead_sender_sleeping_receiver_model(false);
}

#[test]
fn a_later_sender_skips_a_dead_senders_wrapped_record_and_wakes_the_receiver() {
    dead_sender_sleeping_receiver_model(true);
}

/// Two receivers find a record whose sender died between its commit and its header
/// store (wrapped, as in [`dead_sender_polled_model`]) and race to repair it in
/// `try_recv`: the one that takes the send lock from the dead holder writes the `SKIP`,
/// the other finds the lock held (live) or free and repaired (never `Corrupt`). Each
/// calls it twice (the second look reads `tail`, as one in 64 does outside loom). They get
/// nothing (`Empty`, or `Busy` while the other holds the receive side), the `SKIP` is
/// stepped over, `lost()` stays 0, and a message sent afterwards is received.
#[test]
fn two_receivers_racing_in_try_recv_skip_a_dead_senders_record() {
    loom::model(|| {
        let ch = small();
        advance(&ch, TO_48);
        send_and_die_before_the_header(&ch, &[0xDD; 16]);
        let rxs: Vec<_> = (0..2)
            .map(|_| {
                let rx = ch.clone();
                // Two looks each: under loom a `try_` receive reads `tail` (and finds
                // the record committed without its header) at every second look.
                thread::spawn(move || {
                    let mut out = Vec::new();
                    [rx.try_recv(&mut out), rx.try_recv(&mut out)]
                })
            })
            .collect();
        for h in rxs {
            for r in h.join().unwrap() {
                assert!(
                    matches!(r, Err(TryRecvError::Empty | TryRecvError::Busy)),
                    "{r:?}"
                );
            }
        }
        assert_drained(&ch);
        ch.send(&[2; 16]).unwrap();
        let mut out = Vec::new();
        assert_eq!(ch.recv(&mut out), Ok(16));
        assert_eq!(out, [2; 16]);
    });
}

/// Index of `free` among the `u64` words of [`Channel::hostile_words`].
const FREE: usize = 8;

/// Receives the next message, then puts `free` back and leaves the receive lock held by
/// a thread that the lock's probe reports dead: the state a receiver killed between its
/// claim (`head` stored) and its release leaves.
fn receive_and_die_holding_the_claim(ch: &Channel) {
    let (words, locks) = ch.hostile_words();
    let free = words[FREE].load(Ordering::Relaxed);
    ch.recv(&mut Vec::new()).unwrap();
    words[FREE].store(free, Ordering::Relaxed);
    locks[1].store(DEAD_UNDER_LOOM, Ordering::Relaxed);
}

/// A receiver died holding its claim of the first of two 16-byte messages, so the ring is
/// full. A receiver polling with `try_recv` and a sender polling with `try_send` (which
/// repairs when it finds the ring full) race to take the receive lock from the dead
/// holder: whichever does counts the loss and releases the space. The loss is counted
/// once; the receiver gets the second message, then the sender's, each once.
#[test]
fn a_receiver_and_a_sender_repair_a_dead_receivers_claim_once() {
    loom::model(|| {
        let ch = small();
        ch.send(&[1; 16]).unwrap();
        ch.send(&[2; 16]).unwrap();
        receive_and_die_holding_the_claim(&ch);
        let tx = ch.clone();
        let h = thread::spawn(move || {
            loop {
                match tx.try_send(&[3; 16]) {
                    Ok(()) => break,
                    Err(TrySendError::Busy | TrySendError::Full) => thread::yield_now(),
                    Err(e) => panic!("try_send: {e:?}"),
                }
            }
        });
        let mut out = Vec::new();
        for want in [2, 3] {
            loop {
                match ch.try_recv(&mut out) {
                    Ok(n) => {
                        assert_eq!(n, 16);
                        assert_eq!(out, [want; 16]);
                        break;
                    }
                    Err(TryRecvError::Empty | TryRecvError::Busy) => thread::yield_now(),
                    Err(e) => panic!("try_recv: {e:?}"),
                }
            }
        }
        h.join().unwrap();
        assert_eq!(ch.lost(), 1);
        assert!(ch.is_empty());
        assert_eq!(ch.bytes_used(), 0);
    });
}
