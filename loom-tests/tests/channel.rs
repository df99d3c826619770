//! Model checks of the byte channel: a reservation's commit and abort racing a receiver
//! (the receiver sees exactly the committed messages, whole and in order), a sender and
//! a receiver each sleeping for the other (no lost wakeup), and `close` racing a blocked
//! receiver or sender (each wakes and ends; a receiver gets what was sent first).
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
