"""The synthetic city: cellsynth's embedded default dataset.

A seeded generative model of a city, its base stations, their hourly traffic, users moving between them
and the urban knowledge graph, calibrated against the real data in ``../shared/data`` (see
docs/synthetic-city.md for the equations and the measured comparison). In short:

1. **Space.** A square city of ``size_km`` around several centres, each of one kind (business,
   residential, nightlife, university, transport hub), a compact mixed-use city around the middle and a
   residential periphery. Activity density
   ``rho(x) = sum_j w_j exp(-|x - c_j| / s_j) + w_c / (1 + (r / R)^p) + floor``. Stations are drawn with
   intensity ``rho^beta`` (beta < 1: more, smaller cells downtown), points of interest (POIs) with
   intensity ``rho``, each POI's category from the mix of the kind that produced it;
   a POI is served by its nearest station, whose features are its POI counts per category.
2. **Traffic.** Station load ``L_i`` = POI-weighted served demand x lognormal (heavy tail); the hourly
   profile is the station's land-use mix of per-kind activity profiles (Mon-Thu, Fri, Sat, Sun) times a
   channel propensity profile (calls by day, internet in the evening, sms flatter); multiplied by weekly,
   daily (AR(1)) and city-wide factors, hourly log-AR(1) noise, spikes, local events (bursts spreading
   to neighbours) and rare outages (zeros).
3. **Users** at 30-minute steps: home and work (or university) anchors drawn by population and a gravity
   law, weekday schedules, excursions whose destinations follow the exploration and preferential return
   (EPR) model with truncated power-law jump lengths and stay durations, occasional handovers to a
   neighbouring cell; per-step traffic = zero-inflated lognormal bursts x hour profile x location factor.
4. **Knowledge graph** (:mod:`cellsynth.data.knowledge`): BaseLocateAt (station -> square region),
   BaseBelongTo (station -> business area = its dominant centre), BaseBorderBy (Delaunay neighbours),
   ServedBy (POI -> nearest station).

Layout, traffic and users draw from independent streams of one seed: the same seed gives identical
arrays, and e.g. changing ``n_users`` does not change the stations or their traffic.

Modules: :mod:`~cellsynth.data.synthetic.config`, :mod:`~cellsynth.data.synthetic.layout` (space, stations,
POIs) with :mod:`~cellsynth.data.synthetic.knowledge_graph`, :mod:`~cellsynth.data.synthetic.profiles` (hours
of activity), :mod:`~cellsynth.data.synthetic.traffic`, :mod:`~cellsynth.data.synthetic.users`,
:mod:`~cellsynth.data.synthetic.city` (the whole city and its files).
"""

from cellsynth.data.synthetic.city import SyntheticCity, synthesize_city
from cellsynth.data.synthetic.config import CHANNELS, DEFAULT_START, LAND_USES, POI_CATEGORIES, CityConfig
from cellsynth.data.synthetic.layout import CityLayout, build_layout
from cellsynth.data.synthetic.traffic import synthesize_traffic
from cellsynth.data.synthetic.users import synthesize_users

__all__ = [
    "CHANNELS",
    "DEFAULT_START",
    "LAND_USES",
    "POI_CATEGORIES",
    "CityConfig",
    "CityLayout",
    "SyntheticCity",
    "build_layout",
    "synthesize_city",
    "synthesize_traffic",
    "synthesize_users",
]
