# syntax=docker/dockerfile:1
# Build: a static binary, no cgo, with exactly the Go release go.mod names
# (go 1.26.8; change both together). GOTOOLCHAIN=local: a go.mod that asks
# for a newer Go fails the build instead of downloading a toolchain.
FROM golang:1.26.8-bookworm AS build
ENV GOTOOLCHAIN=local
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/tenantd .
# The few files the binary reads at run time, taken from this pinned image:
# the CA certificates (OIDC discovery, OTLP over TLS), the resolver order,
# the unprivileged user (uid 65532, distroless's "nonroot") and /tmp.
RUN mkdir -p /rootfs/etc/ssl/certs /rootfs/tmp \
    && cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ \
    && echo 'hosts: files dns' >/rootfs/etc/nsswitch.conf \
    && echo 'nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin' >/rootfs/etc/passwd \
    && echo 'nonroot:x:65532:' >/rootfs/etc/group \
    && chmod 1777 /rootfs/tmp

# Run: nothing but the binary and those files, so the runtime is pinned by
# the builder's tag above; as the unprivileged user.
FROM scratch
COPY --from=build /rootfs/ /
COPY --from=build /out/tenantd /usr/local/bin/tenantd
USER 65532:65532
ENV HTTP_ADDR=:8080
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/tenantd", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/tenantd"]
CMD ["serve"]
