-- Reference data the command decisions need, managed through admin endpoints.
CREATE TABLE restaurants
(
    id             uuid PRIMARY KEY,
    name           text             NOT NULL,
    lat            double precision NOT NULL CHECK (lat BETWEEN -90 AND 90),
    lon            double precision NOT NULL CHECK (lon BETWEEN -180 AND 180),
    time_zone      text             NOT NULL,
    currency       char(3)          NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    commission_bps integer          NOT NULL CHECK (commission_bps BETWEEN 0 AND 10000),
    tax_bps        integer          NOT NULL CHECK (tax_bps BETWEEN 0 AND 10000),
    is_open        boolean          NOT NULL DEFAULT true,
    created_at     timestamptz      NOT NULL DEFAULT now(),
    updated_at     timestamptz      NOT NULL DEFAULT now()
);

CREATE TABLE menu_items
(
    id            uuid PRIMARY KEY,
    restaurant_id uuid        NOT NULL REFERENCES restaurants (id),
    name          text        NOT NULL,
    price_minor   bigint      NOT NULL CHECK (price_minor >= 0),
    available     boolean     NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX menu_items_restaurant ON menu_items (restaurant_id);

CREATE TABLE riders
(
    id         uuid PRIMARY KEY,
    name       text        NOT NULL,
    active     boolean     NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
