//! Model checks of the byte channel: a reservation's commit and abort racing a receiver
//! (the receiver sees exactly the committed messages, whole and in order), a sender and
//! a receiver each sleeping for the other (no lost wakeup), `close` racing a blocked
//! receiver or sender (each wakes and ends; a receiver gets what was sent first), a send
//! racing `close` (a send acknowledged `Ok` is never behind a `Disconnected`), two
//! receivers racing for two messages (one each, never the same one), and a held send side
//! streaming into a full ring past a sleeping receiver, and sends racing a close from a
//! third thread (received exactly when acknowledged `Ok`).
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use shmstate::{Channel, ChannelOptions, RecvError, SendError};

/// A 64-byte ring: room for two 16-byte messages (24 bytes each with their headers).
fn small() -> Arc<Box<Channel>> {
    Arc::new(Channel::new(ChannelOptions::new(64)).unwrap())
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

/// Two sends racing a `close` from a third thread while the receiver drains: the
/// messages received are exactly the sends acknowledged `Ok` (a prefix, one sender), and
/// none that was refused.
#[test]
fn sends_racing_a_close_are_received_exactly_when_acknowledged() {
    loom::model(|| {
        let ch = small();
        let tx = ch.clone();
        let closer = ch.clone();
        let h = thread::spawn(move || {
            let mut acked = 0u8;
            for i in 1..=2u8 {
                if tx.send(&[i]).is_err() {
                    break;
                }
                acked = i;
            }
            acked
        });
        let c = thread::spawn(move || closer.close());
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
    });
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
