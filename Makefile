# mailcluster — see README.md.
GO ?= go

.PHONY: test check build proto tools run

# The test command: installs what is missing, checks formatting, vet and the
# generated code, then runs every test against real PostgreSQL, S3 and slapd.
test: tools check
	$(GO) test -race -count=1 -shuffle=on -timeout 60m ./...

tools:
	scripts/tools.sh

check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	scripts/genproto.sh --check

build:
	$(GO) build -o bin/mailcluster ./cmd/mailcluster

proto:
	scripts/genproto.sh

# Runs the whole cluster locally (mailcluster dev); see README.md.
run: tools build
	bin/mailcluster dev $(ARGS)
