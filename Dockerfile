# syntax=docker/dockerfile:1
#
# stagegate's container image: `docker build -t stagegate .`
#
# Build stage: Debian bookworm with Rust. git2 builds libgit2 and libssh2 from
# the sources its -sys crates bundle and links them statically; OpenSSL is the
# system one (libssl-dev here, libssl3 in the final image). zlib is linked
# statically too (LIBZ_SYS_STATIC), as the final image has no libz.
ARG RUST_IMAGE=rust:1-bookworm
FROM ${RUST_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends pkg-config libssl-dev \
 && rm -rf /var/lib/apt/lists/*
ENV LIBZ_SYS_STATIC=1 \
    CARGO_TERM_COLOR=never
# `dist` for published images; the e2e workflow builds with `release`, which
# compiles several times faster and behaves the same.
ARG PROFILE=dist
WORKDIR /src

# Dependency layer: the manifests with empty library and binary sources, so
# that the crates.io dependencies are compiled once and reused until
# Cargo.toml or Cargo.lock change. Cargo reads a workspace only when every
# target its manifests name exists, so the benchmark sources (small, seldom
# changed) come in whole. A new crate under crates/ needs its Cargo.toml,
# stub sources and benches here too.
COPY Cargo.toml Cargo.lock ./
COPY crates/kube-sim/Cargo.toml crates/kube-sim/
COPY benches benches
COPY crates/kube-sim/benches crates/kube-sim/benches
RUN mkdir -p src crates/kube-sim/src \
 && echo 'fn main() {}' > src/main.rs \
 && echo 'fn main() {}' > crates/kube-sim/src/main.rs \
 && touch src/lib.rs crates/kube-sim/src/lib.rs \
 && cargo build --profile "$PROFILE" --locked --bin stagegate

# The real sources. `touch` because COPY keeps the files' times, which may
# be older than the stub build's outputs, and Cargo would then skip them.
# The `dist` profile (Cargo.toml: fat LTO, one codegen unit) makes the
# smaller binary whose resident memory BENCHMARKS.md measures; the image
# drops its line tables (strip --strip-debug keeps the symbols).
# The final image holds glibc, libgcc and OpenSSL 3 and nothing else, so the
# last line fails the build, rather than the pod at start-up, if the binary
# needs another shared library.
COPY src src
RUN touch src/main.rs src/lib.rs \
 && cargo build --profile "$PROFILE" --locked --bin stagegate \
 && strip --strip-debug "target/$PROFILE/stagegate" \
 && cp "target/$PROFILE/stagegate" /stagegate \
 && ! ldd /stagegate | grep -vE 'linux-vdso|ld-linux|lib(c|m|dl|rt|pthread|gcc_s|ssl|crypto)\.so'

# Final stage: distroless "cc" (glibc, libgcc, libssl3, CA certificates,
# tzdata; no shell, no package manager), as its "nonroot" user.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /stagegate /usr/local/bin/stagegate
# uid/gid 65532 is distroless' "nonroot"; manifests/04-deployment.yaml runs
# the pod as the same ids.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/stagegate"]
CMD ["run"]
