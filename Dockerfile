# ccswitch on Debian 12, installed exactly as the README's first command does.
FROM debian:12
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/ccswitch
COPY . .
RUN ./setup.sh install
EXPOSE 5060/udp 5060/tcp 32000-34999/udp 8080/tcp
CMD [".venv/bin/ccswitch", "--config", "config.yaml", "run"]
