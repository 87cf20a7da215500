//! Response bodies passed from an upstream connection to the client on the fast path: finds
//! where the body ends in the upstream bytes and writes what the client gets. A chunked body is
//! passed on as it is (its chunks are only scanned), one read until close goes out as chunks.
//! No I/O.

use crate::h1::Framing;

#[derive(Debug, PartialEq, Eq)]
pub struct BadChunk;

/// The state of one response body being passed on.
pub struct BodyCodec {
    framing: Framing,
    chunked: ChunkScanner,
    done: bool,
}

impl BodyCodec {
    pub fn new(framing: Framing) -> Self {
        BodyCodec {
            framing,
            chunked: ChunkScanner::default(),
            done: matches!(framing, Framing::Empty | Framing::Length(0)),
        }
    }

    /// Whether the whole body has been passed on.
    pub fn done(&self) -> bool {
        self.done
    }

    /// Takes body bytes from the front of `input` and appends what the client gets to `out`;
    /// returns how many bytes of `input` were the body's (the rest is beyond its end).
    pub fn pass(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, BadChunk> {
        if self.done || input.is_empty() {
            return Ok(0);
        }
        let taken = match &mut self.framing {
            Framing::Empty => 0,
            Framing::Length(left) => {
                let n = input
                    .len()
                    .min(usize::try_from(*left).unwrap_or(usize::MAX));
                *left -= n as u64;
                self.done = *left == 0;
                out.extend_from_slice(&input[..n]);
                n
            }
            Framing::Chunked => {
                let n = self.chunked.scan(input)?;
                self.done = self.chunked.done();
                out.extend_from_slice(&input[..n]);
                n
            }
            Framing::Close => {
                out.extend_from_slice(format!("{:x}\r\n", input.len()).as_bytes());
                out.extend_from_slice(input);
                out.extend_from_slice(b"\r\n");
                input.len()
            }
        };
        Ok(taken)
    }

    /// The upstream closed the connection: the end of a body read until close (its last chunk
    /// goes to `out`), an error for any other unfinished body.
    pub fn eof(&mut self, out: &mut Vec<u8>) -> Result<(), BadChunk> {
        match self.framing {
            Framing::Close => {
                self.done = true;
                out.extend_from_slice(b"0\r\n\r\n");
                Ok(())
            }
            _ if self.done => Ok(()),
            _ => Err(BadChunk),
        }
    }
}

/// Where a chunked body is (RFC 9112 §7.1): sizes, extensions, data, trailer fields.
#[derive(Default)]
struct ChunkScanner {
    state: Chunk,
    size: u64,
    digits: u8,
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    #[default]
    Size,
    Ext,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    Trailer,
    TrailerLf,
    EndLf,
    Done,
}

impl ChunkScanner {
    fn done(&self) -> bool {
        self.state == Chunk::Done
    }

    /// How many bytes of `input` belong to the body (all of them unless it ends inside).
    fn scan(&mut self, input: &[u8]) -> Result<usize, BadChunk> {
        let mut i = 0;
        while i < input.len() && self.state != Chunk::Done {
            if self.state == Chunk::Data {
                let n = (input.len() - i).min(usize::try_from(self.size).unwrap_or(usize::MAX));
                self.size -= n as u64;
                i += n;
                if self.size == 0 {
                    self.state = Chunk::DataCr;
                }
                continue;
            }
            let b = input[i];
            i += 1;
            self.state = match (self.state, b) {
                (Chunk::Size, b) if b.is_ascii_hexdigit() => {
                    if self.digits >= 15 {
                        return Err(BadChunk);
                    }
                    self.digits += 1;
                    self.size = self.size * 16 + u64::from(hex(b));
                    Chunk::Size
                }
                (Chunk::Size, b';' | b' ' | b'\t') if self.digits > 0 => Chunk::Ext,
                (Chunk::Size, b'\r') if self.digits > 0 => Chunk::SizeLf,
                (Chunk::Ext, b'\r') => Chunk::SizeLf,
                (Chunk::Ext, _) => Chunk::Ext,
                (Chunk::SizeLf, b'\n') => {
                    self.digits = 0;
                    if self.size == 0 {
                        Chunk::TrailerStart
                    } else {
                        Chunk::Data
                    }
                }
                (Chunk::DataCr, b'\r') => Chunk::DataLf,
                (Chunk::DataLf, b'\n') => Chunk::Size,
                (Chunk::TrailerStart, b'\r') => Chunk::EndLf,
                (Chunk::TrailerStart, _) => Chunk::Trailer,
                (Chunk::Trailer, b'\r') => Chunk::TrailerLf,
                (Chunk::Trailer, _) => Chunk::Trailer,
                (Chunk::TrailerLf, b'\n') => Chunk::TrailerStart,
                (Chunk::EndLf, b'\n') => Chunk::Done,
                _ => return Err(BadChunk),
            };
        }
        Ok(i)
    }
}

fn hex(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes; returns (bytes taken, output, done).
    fn feed(
        framing: Framing,
        input: &[u8],
        step: usize,
    ) -> Result<(usize, Vec<u8>, bool), BadChunk> {
        let mut codec = BodyCodec::new(framing);
        let mut out = Vec::new();
        let mut taken = 0;
        for piece in input.chunks(step) {
            let n = codec.pass(piece, &mut out)?;
            taken += n;
            if n < piece.len() {
                break;
            }
        }
        Ok((taken, out, codec.done()))
    }

    #[test]
    fn chunked_bodies_end_where_their_last_chunk_and_trailers_end() {
        let body = b"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n";
        for step in [1, 2, 7, body.len()] {
            let mut input = body.to_vec();
            input.extend_from_slice(b"HTTP/1.1 next");
            let (taken, out, done) = feed(Framing::Chunked, &input, step).unwrap();
            assert_eq!(taken, body.len(), "step {step}");
            assert_eq!(out, body);
            assert!(done);
        }
        assert!(feed(Framing::Chunked, b"0\r\n\r\n", 1).unwrap().2);
        assert!(!feed(Framing::Chunked, b"5\r\nhel", 2).unwrap().2);
        assert_eq!(feed(Framing::Chunked, b"zz\r\n", 1).err(), Some(BadChunk));
        assert_eq!(
            feed(Framing::Chunked, b"1\r\nab\r\n", 1).err(),
            Some(BadChunk)
        );
        assert_eq!(
            feed(Framing::Chunked, b"ffffffffffffffffff\r\n", 64).err(),
            Some(BadChunk)
        );
    }

    #[test]
    fn length_and_close_framing() {
        let (taken, out, done) = feed(Framing::Length(3), b"ok\nextra", 2).unwrap();
        assert_eq!((taken, out.as_slice(), done), (3, &b"ok\n"[..], true));
        assert!(BodyCodec::new(Framing::Empty).done());
        assert!(BodyCodec::new(Framing::Length(0)).done());

        let mut codec = BodyCodec::new(Framing::Close);
        let mut out = Vec::new();
        assert_eq!(codec.pass(b"abc", &mut out), Ok(3));
        assert!(!codec.done());
        codec.eof(&mut out).unwrap();
        assert!(codec.done());
        assert_eq!(out, b"3\r\nabc\r\n0\r\n\r\n");
        assert_eq!(
            BodyCodec::new(Framing::Length(5)).eof(&mut out),
            Err(BadChunk)
        );
    }
}
